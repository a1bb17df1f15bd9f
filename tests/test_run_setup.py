"""Set-up of a run: bad settings, data, rewards, models and engines are refused by name, before
any large model is loaded, and nothing is left open."""

from __future__ import annotations

import warnings

import parity_reward
import pytest
import torch

from gvm_raft.cli import main
from gvm_raft.config import ConfigError, load_config, save_config
from gvm_raft.demo import run_demo
from gvm_raft.models import ModelLoadError, load_causal_lm
from gvm_raft.run import load_datasets
from gvm_raft.trainer import (
    train,
)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        load_config(None, ["learning_rat=1e-4"])
    with pytest.raises(ConfigError, match="num_generations must be a whole number"):
        load_config(None, ["num_generations=many"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (dict(prompts_per_iteration=1000), "prompts_per_iteration=1000 exceeds the 16 usable"),
        (dict(reward="no_such_module:fn"), "reward 'no_such_module:fn' cannot be loaded"),
    ],
)
def test_data_and_reward_errors_come_before_the_model_is_loaded(
    tiny_config, tmp_path, override, message
):
    """The model path does not exist, so the error proves the model was never loaded."""
    missing_model = str(tmp_path / "no-model")
    with pytest.raises(ValueError, match=message):
        train(
            tiny_config("run", model_name_or_path=missing_model, **override),
            progress=False,
        )


def test_a_failed_setup_closes_the_reward(tiny_config, tmp_path, monkeypatch):
    closed = []
    monkeypatch.setattr("gvm_raft.run.close_reward", closed.append)
    with pytest.raises(ModelLoadError, match="model_name_or_path"):
        train(
            tiny_config("a", model_name_or_path=str(tmp_path / "none")),
            progress=False,
        )
    assert closed == [parity_reward.even_code_point_sum]


def test_demo_checks_its_overrides_before_building_the_world(tmp_path):
    with pytest.raises(ConfigError, match="iterations must be a whole number; got 'abc'"):
        run_demo(str(tmp_path / "world"), str(tmp_path / "demo"), ["iterations=abc"])
    assert not (tmp_path / "world").exists()


@pytest.mark.parametrize(
    ("variable", "engine"),
    [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")],
)
def test_sharding_engine_without_gpu_is_refused(tiny_config, monkeypatch, variable, engine):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(variable, "true")
    with pytest.raises(ConfigError, match=f"asks for {engine} .* torchrun"):
        train(tiny_config("run"), progress=False)


def test_attention_kernel_is_applied_and_a_bad_one_is_named(tiny_world):
    model = load_causal_lm(tiny_world / "model", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    with pytest.raises(ModelLoadError, match="attn_implementation=no_such_kernel: "):
        load_causal_lm(tiny_world / "model", attn_implementation="no_such_kernel")


def test_the_cli_prints_user_errors_in_one_line_and_lets_bugs_keep_their_traceback(
    tiny_config, tmp_path, monkeypatch, capsys
):
    save_config(tiny_config(allocation="uniform"), tmp_path / "c.yaml")
    assert main(["train", str(tmp_path / "c.yaml"), "allocation_method=rounding"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "did you mean 'allocation'" in error

    def broken(config, progress=True):
        raise ValueError("zip() argument 2 is shorter than argument 1")  # an internal bug

    monkeypatch.setattr("gvm_raft.trainer.train", broken)
    with pytest.raises(ValueError, match="zip"):
        main(["train", str(tmp_path / "c.yaml")])


def test_online_statistics_on_a_run_that_never_revisits_a_prompt_are_named(tiny_config):
    """Before: online_stats over a single epoch gave every prompt its batch's mean estimates,
    a uniform allocation under GVM's name, without a word."""
    online = dict(online_stats=True, stage1_samples=0, prompts_per_iteration=4)
    with pytest.warns(UserWarning, match="visit each of the 16 training prompts at most once"):
        load_datasets(tiny_config("a", iterations=4, **online))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_datasets(tiny_config("b", iterations=5, **online))  # the fifth revisits
        load_datasets(tiny_config("c", iterations=4))  # a stage 1 measures every prompt


def test_train_max_prompts_keeps_the_first_rows_and_names_itself_when_too_few(tiny_config):
    all_rows, _ = load_datasets(tiny_config("a"))
    capped, _ = load_datasets(tiny_config("b", train_max_prompts=5, prompts_per_iteration=4))
    assert [r.row_id for r in capped] == [r.row_id for r in all_rows[:5]] == [0, 1, 2, 3, 4]
    too_few = r"exceeds the 3 usable prompts .*\(train_max_prompts=3\)"
    with pytest.raises(ConfigError, match=too_few):
        load_datasets(tiny_config("c", train_max_prompts=3, prompts_per_iteration=4))
    online = dict(online_stats=True, stage1_samples=0, prompts_per_iteration=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 2 iterations of 4 over 4 prompts: two epochs
        load_datasets(tiny_config("d", iterations=2, train_max_prompts=4, **online))
