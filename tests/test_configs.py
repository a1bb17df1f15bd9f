"""Every shipped config loads and validates; the paper configs differ only where they should;
the accelerate configs launch the engines they name."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path

import pytest

from gvm_raft.cli import main
from gvm_raft.config import ConfigError, GVMConfig, load_config
from gvm_raft.sharding import fit_deepspeed_config
from gvm_raft.trainer import train

CONFIGS = sorted(
    p
    for p in (Path(__file__).parent.parent / "configs").rglob("*.yaml")
    if p.parent.name != "accelerate"  # accelerate launch configs, not run configs
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    load_config(path)


def test_paper_arms_share_everything_but_algorithm_and_allocation():
    paper = {p.stem: vars(load_config(p)) for p in CONFIGS if p.parent.name == "paper"}
    assert len(paper) == 4
    allowed = {"algorithm", "allocation", "stage1_samples", "reuse_stage1", "output_dir"}
    first = next(iter(paper.values()))
    for values in paper.values():
        assert {k for k in values if values[k] != first[k]} <= allowed


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ddp-gpus.yaml", {"ACCELERATE_MIXED_PRECISION": "bf16"}),
        (
            "fsdp2-gpus.yaml",
            {
                "ACCELERATE_USE_FSDP": "true",
                "FSDP_VERSION": "2",
                "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
            },
        ),
        (
            "deepspeed-zero2-gpus.yaml",
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
        ),
        (
            "deepspeed-zero3-gpus.yaml",
            {
                "ACCELERATE_USE_DEEPSPEED": "true",
                "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
                "ACCELERATE_DEEPSPEED_ZERO3_INIT": "false",
            },
        ),
    ],
)
def test_accelerate_config_launches_its_engine(name, expected):
    from sharded_on_cpu import CONFIGS as ACCELERATE_CONFIGS
    from sharded_on_cpu import launch_environment

    env = launch_environment(ACCELERATE_CONFIGS / name)
    assert {key: env.get(key) for key in expected} == expected
    if "ACCELERATE_USE_DEEPSPEED" in expected:
        assert env["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] == "1"


def test_deepspeed_config_is_fitted_to_the_step():
    config = {"train_batch_size": "auto", "gradient_accumulation_steps": 4, "zero_optimization": {}}
    fit_deepspeed_config(config, micro_batch_size=3, max_grad_norm=0.5)
    assert config == {
        "train_micro_batch_size_per_gpu": 3,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": 0.5,
        "zero_optimization": {},
    }
    with pytest.raises(ConfigError, match="sets 'optimizer': remove it"):
        fit_deepspeed_config({"optimizer": {"type": "Adam"}}, 3, 0.5)


def test_train_help_lists_every_config_key_with_default_and_meaning(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for field in dataclasses.fields(GVMConfig):
        assert f"\n  {field.name} = {field.default!r}: " in text
    assert "  learning_rate = 1e-06: AdamW learning rate\n" in text


def test_rejected_samples_norms_are_grpos_only():
    with pytest.raises(ConfigError, match="algorithm=raft\\+\\+ trains accepted samples only"):
        GVMConfig(algorithm="raft++", grad_norm_samples="all")
    assert GVMConfig(algorithm="grpo", grad_norm_samples="all").grad_norm_samples == "all"


@pytest.mark.parametrize(
    "settings",
    [
        {"stage1_samples": 4, "num_generations": 4},  # k = N/m with reuse: every prompt gets k
        {"stage1_samples": 2, "num_generations": 4, "min_generations": 4},
    ],
)
@pytest.mark.parametrize("allocation", ["gvm", "knapsack"])
def test_an_allocation_without_freedom_is_refused(settings, allocation):
    with pytest.raises(ConfigError, match="has no freedom: every prompt already holds 4"):
        GVMConfig(allocation=allocation, **settings)
    with pytest.raises(ConfigError, match="reuse_stage1=false"):
        GVMConfig(allocation=allocation, **settings)
    # uniform needs none; without reuse the stage-1 samples do not count towards n_i
    GVMConfig(allocation="uniform", **settings)
    if "min_generations" not in settings:
        GVMConfig(allocation=allocation, reuse_stage1=False, **settings)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("max_grad_norm", -1.0, r"max_grad_norm must be > 0 \(and finite\); got -1.0"),
        ("max_grad_norm", 0.0, "max_grad_norm must be > 0"),
        ("accept_threshold", math.nan, "accept_threshold must be a finite number; got nan"),
        ("temperature", math.nan, "temperature must be > 0"),
        ("gvm_alpha", math.nan, "gvm_alpha must be >= 0"),
        ("gvm_beta", math.inf, "gvm_beta must be a finite number"),
        ("beta", math.nan, "beta must be >= 0"),
        ("epsilon_high", math.nan, "epsilon_high must be >= 0"),
        ("learning_rate", math.nan, "learning_rate must be >= 0"),
        ("learning_rate", math.inf, r"learning_rate must be >= 0 \(and finite\); got inf"),
        ("epsilon", -0.2, "epsilon must be >= 0"),
        ("seed", -1, "seed must be >= 0"),
        ("max_accept_rate", 1.5, r"max_accept_rate must lie in \[0, 1\]; got 1.5"),
        ("stats_decay", 1.0, r"stats_decay must lie in \[0, 1\); got 1.0"),
        ("top_p", 0.0, r"top_p must lie in \(0, 1\]"),
        ("dual_clip", 1.0, "dual_clip must be > 1"),
        ("eval_max_prompts", 0, "eval_max_prompts must be >= 1"),
        ("train_max_prompts", 0, "train_max_prompts must be >= 1"),
        ("iterations", 0, "iterations must be >= 1"),
    ],
)
def test_numbers_outside_their_range_are_refused_by_name(setting, value, message):
    with pytest.raises(ConfigError, match=message):
        GVMConfig(**{setting: value})


def test_every_numeric_setting_has_a_range_and_only_they_do():
    """Before, the test only checked that RANGES' keys were field names."""
    from gvm_raft.config import FIELD_NAMES, RANGES

    hints = typing.get_type_hints(GVMConfig)
    numeric = {
        name
        for name in FIELD_NAMES
        if typing.get_origin(hints[name]) is not tuple  # accept_rate_prior: checked as a pair
        and (set(typing.get_args(hints[name])) - {type(None)} or {hints[name]}) <= {int, float}
    }
    assert numeric == set(RANGES)
    assert {"learning_rate", "max_generations", "dual_clip", "epsilon"} <= numeric
    GVMConfig(dual_clip=None, max_generations=None, eval_max_prompts=None, learning_rate=0.0)


@pytest.mark.parametrize(
    "path", [p for p in CONFIGS if p.parent.name == "paper"], ids=lambda p: p.stem
)
def test_paper_config_trains_an_iteration_on_the_tiny_model(path, tiny_overrides, tmp_path):
    """The published settings with the reference's behaviour (KL to the iteration's start, a
    fresh optimizer every iteration, stage 1 only estimating), shrunk to the tiny model."""
    stage1 = 2 if load_config(path).stage1_samples else 0
    shrunk = tiny_overrides(iterations=1, stage1_samples=stage1, max_completion_length=12)
    local = ["rollout_backend=hf", "mixed_precision=no", "log_with=null"]
    config = load_config(path, [*shrunk, *local, f"output_dir={tmp_path / 'run'}"])
    assert config.reference_model == "iteration_start" and config.reset_optimizer_each_iteration
    assert not config.reuse_stage1 or config.allocation == "uniform"
    metrics = [
        json.loads(line)
        for line in (train(config, progress=False) / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["iteration"] for m in metrics] == [0, 1]
    assert metrics[1]["train/optimizer_steps"] >= 1 and math.isfinite(metrics[1]["train/loss"])


def test_yaml_no_is_the_word_no_where_a_setting_takes_it(tmp_path):
    # YAML 1.1 reads `no` as false: `mixed_precision=no` used to be refused ("got False")
    assert load_config(None, ["mixed_precision=no"]).mixed_precision == "no"
    path = tmp_path / "c.yaml"
    path.write_text("mixed_precision: no\n")
    assert load_config(path).mixed_precision == "no"
    with pytest.raises(ConfigError, match="mixed_precision must be one of no, bf16, fp16"):
        load_config(None, ["mixed_precision=yes"])
