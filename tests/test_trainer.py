"""End-to-end: two tiny iterations, checkpoints, and resume equal to an uninterrupted run."""

from __future__ import annotations

import json

import pytest

from gvm_raft.config import ConfigError, TrainConfig, load_config
from gvm_raft.tasks.demo_world import DemoWorldConfig, prepare_demo_world
from gvm_raft.tasks.tiny_model import TinyModelConfig
from gvm_raft.trainer import train

WORLD = DemoWorldConfig(
    seed=2,
    sft_size=300,
    train_size=16,
    test_size=8,
    model=TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
    sft_steps=5,
    sft_batch_size=16,
    probe_samples=2,
    max_new_tokens=24,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    path = tmp_path_factory.mktemp("world") / "w"
    prepare_demo_world(path, WORLD, progress=False)
    return path


def config(world, out, **overrides) -> TrainConfig:
    values = dict(
        model_name_or_path=str(world / "model"),
        train_file=str(world / "data/train.jsonl"),
        test_file=str(world / "data/test.jsonl"),
        output_dir=str(out),
        reward="arithmetic",
        prompt_template="plain",
        iterations=2,
        prompts_per_iteration=4,
        num_generations=4,
        stage1_samples=2,
        max_completion_length=16,
        learning_rate=1e-3,
        mini_batch_size=8,
        micro_batch_size=4,
        eval_samples=2,
    )
    return TrainConfig(**(values | overrides))


def rows(run_dir):
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        out.append({k: v for k, v in json.loads(line).items() if not k.startswith("time/")})
    return out


def test_two_iterations_write_metrics_and_checkpoints(world, tmp_path):
    run_dir = train(config(world, tmp_path / "run"), progress=False)
    metrics = rows(run_dir)
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    assert metrics[1]["samples/stage1"] == 8 and metrics[1]["samples/stage2"] == 8
    assert metrics[2]["samples/cumulative"] == 32
    assert metrics[1]["train/optimizer_steps"] == 2
    checkpoint = run_dir / "checkpoints" / "iteration-000002"
    assert (checkpoint / "model" / "model.safetensors").exists()
    assert (checkpoint / "optimizer.pt").exists()
    assert not (run_dir / "checkpoints" / "iteration-000001").exists()
    assert (run_dir / "config.yaml").exists()


def test_resume_repeats_the_uninterrupted_run(world, tmp_path):
    full = rows(train(config(world, tmp_path / "full"), progress=False))
    train(config(world, tmp_path / "cut", iterations=1), progress=False)
    resumed = rows(train(config(world, tmp_path / "cut", resume=True), progress=False))
    assert resumed == full


def test_existing_run_is_not_overwritten(world, tmp_path):
    train(config(world, tmp_path / "run", iterations=1), progress=False)
    with pytest.raises(ConfigError, match="resume=true"):
        train(config(world, tmp_path / "run", iterations=1), progress=False)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        load_config(None, ["learning_rat=1e-4"])
    with pytest.raises(ConfigError, match="num_generations must be a int"):
        load_config(None, ["num_generations=many"])
