"""The vLLM rollout backend. Without vLLM: a clear error. With it (a GPU machine, or the
third-party vllm-cpu build in its own environment): counts, log-probs, seeds and weight sync
on the tiny model, for real."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from launch import child_env, torchrun, write_run_config

from gvm_raft.cli import main
from gvm_raft.config import ConfigError, GVMConfig
from gvm_raft.logprobs import token_log_probs
from gvm_raft.rollout import SamplingParams
from gvm_raft.tasks.tiny_model import TinyModelConfig, build_tiny_model_for
from gvm_raft.trainer import train

HAS_VLLM = importlib.util.find_spec("vllm") is not None
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB per CPU engine; the tests hold two
PROMPTS = ["1+2\n", "((12+7)*3)-5\n", "9*9\n"]
# head size 32: vLLM's CPU attention has no kernel for 16
VLLM_MODEL = TinyModelConfig(hidden_size=64, num_layers=1, num_heads=2, intermediate_size=128)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed")
def test_missing_vllm_names_the_fix(tiny_world, tmp_path):
    """Refused before the model is loaded: the model path does not exist."""
    config = GVMConfig(
        model_name_or_path=str(tmp_path / "no-model"),
        train_file=str(tiny_world / "data/train.jsonl"),
        output_dir=str(tmp_path / "run"),
        rollout_backend="vllm",
    )
    with pytest.raises(ConfigError, match=r"pip install 'gvm-raft\[vllm\]'.*rollout_backend=hf"):
        train(config, progress=False)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed")
def test_eval_with_vllm_missing_names_the_fix(tiny_world, capsys):
    data = str(tiny_world / "data/test.jsonl")
    assert main(["eval", str(tiny_world / "model"), data, "--rollout-backend", "vllm"]) == 2
    assert "rollout_backend=vllm: vLLM is not installed: pip install" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, char_tokenizer):
    """A tiny Llama vLLM's CPU build can run."""
    model = build_tiny_model_for(char_tokenizer, VLLM_MODEL, seed=3)
    path = tmp_path_factory.mktemp("vllm") / "model"
    model.save_pretrained(path)
    char_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def engine(model_dir):
    pytest.importorskip("vllm")
    from transformers import AutoTokenizer

    from gvm_raft.rollout.vllm import VLLMRollout

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return VLLMRollout(model_dir, tokenizer, progress=False), tokenizer


def assert_log_probs_match(rollout, tokenizer, model, seed):
    """Sampled log-probs equal the model's teacher-forced log-probs at the same temperature
    (to 1e-2: the engine computes in reduced precision on CPU)."""
    out = rollout.generate(PROMPTS, [2, 1, 2], SamplingParams(0.8, 1.0, 12), seed=seed)
    for prompt, group in zip(PROMPTS, out, strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        for sample in group:
            assert len(sample.log_probs) == len(sample.token_ids)
            ids = torch.tensor([prompt_ids + sample.token_ids])
            with torch.no_grad():
                expected = token_log_probs(model, ids, torch.ones_like(ids), 0.8)[0]
            got = torch.tensor(sample.log_probs)
            torch.testing.assert_close(got, expected[len(prompt_ids) - 1 :], atol=1e-2, rtol=0)


@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM (GPU) or vllm-cpu")
def test_vllm_counts_log_probs_and_seeds(engine, model_dir):
    from transformers import AutoModelForCausalLM

    rollout, tokenizer = engine
    params = SamplingParams(0.8, 1.0, 12)
    out = rollout.generate(PROMPTS, [3, 0, 2], params, seed=5)
    assert [len(g) for g in out] == [3, 0, 2]
    again = rollout.generate(PROMPTS, [3, 0, 2], params, seed=5)
    assert [[s.token_ids for s in g] for g in out] == [[s.token_ids for s in g] for g in again]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert_log_probs_match(rollout, tokenizer, model, seed=5)


@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM (GPU) or vllm-cpu")
def test_vllm_sync_weights_loads_the_trainer_policy(engine, model_dir, char_tokenizer):
    from transformers import AutoModelForCausalLM

    rollout, tokenizer = engine
    other = build_tiny_model_for(char_tokenizer, VLLM_MODEL, seed=4).eval()
    rollout.sync_weights(other)
    assert_log_probs_match(rollout, tokenizer, other, seed=6)
    original = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rollout.sync_weights(original)
    assert_log_probs_match(rollout, tokenizer, original, seed=7)


@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM (GPU) or vllm-cpu")
def test_training_iteration_with_vllm_rollouts(engine, model_dir, tiny_world, tmp_path):
    config = GVMConfig(
        model_name_or_path=str(model_dir),
        train_file=str(tiny_world / "data/train.jsonl"),
        test_file=str(tiny_world / "data/test.jsonl"),
        output_dir=str(tmp_path / "run"),
        reward="parity_reward:even_code_point_sum",
        prompt_template="plain",
        rollout_backend="vllm",
        iterations=1,
        prompts_per_iteration=4,
        num_generations=4,
        stage1_samples=2,
        max_completion_length=12,
        mini_batch_size=8,
        micro_batch_size=8,
        eval_samples=2,
        learning_rate=1e-3,
    )
    run_dir = train(config, progress=False)
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and '"samples/stage2": 8' in rows[1]


@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM (GPU) or vllm-cpu")
def test_eval_command_with_the_vllm_backend(model_dir, tiny_world, tmp_path):
    """In its own process, as a user runs it (one vLLM engine per process)."""
    out = tmp_path / "results.json"
    options = ["--reward", "parity_reward:even_code_point_sum", "--prompt-template", "plain"]
    options += ["--max-completion-length", "12", "--eval-samples", "3", "--eval-max-prompts", "5"]
    options += ["--rollout-backend", "vllm", "--out", str(out)]
    data = str(tiny_world / "data/test.jsonl")
    command = [sys.executable, "-m", "gvm_raft.cli", "eval", str(model_dir), data, *options]
    done = subprocess.run(command, capture_output=True, text=True, env=child_env(), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["test"]["prompts"] == 5
    assert 0 <= results["test"]["accuracy"] <= results["test"]["pass@3"] <= 1


@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM (GPU) or vllm-cpu")
def test_two_process_run_gives_each_process_its_own_engine(model_dir, tiny_world, tmp_path):
    """Under torchrun every process starts its engine in the launcher's group (on a GPU machine:
    on its own device), trains, and shuts the engine down before the group closes."""
    run_dir = tmp_path / "run"
    overrides = [f"model_name_or_path: {model_dir}", 'test_file: ""', "rollout_backend: vllm"]
    overrides += ["iterations: 1", "prompts_per_iteration: 4"]
    overrides += ["mini_batch_size: 8", "micro_batch_size: 8"]
    config = write_run_config(tiny_world, tmp_path / "config.yaml", run_dir, *overrides)
    done = torchrun("-m", "gvm_raft.cli", "train", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert output.count("Using external launcher") == 2
    assert "Traceback" not in output, output[-3000:]
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2 and '"samples/stage2": 8' in rows[1]
