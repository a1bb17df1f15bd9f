"""Every shipped config loads and validates; the paper configs differ only where they should;
the accelerate configs launch the engines they name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from gvm_raft.cli import main
from gvm_raft.config import ConfigError, TrainConfig, load_config
from gvm_raft.sharding import fit_deepspeed_config

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
    for field in dataclasses.fields(TrainConfig):
        assert f"\n  {field.name} = {field.default!r}: " in text
    assert "  learning_rate = 1e-06: AdamW learning rate\n" in text


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
        TrainConfig(allocation=allocation, **settings)
    with pytest.raises(ConfigError, match="reuse_stage1=false"):
        TrainConfig(allocation=allocation, **settings)
    # uniform needs none; without reuse the stage-1 samples do not count towards n_i
    TrainConfig(allocation="uniform", **settings)
    if "min_generations" not in settings:
        TrainConfig(allocation=allocation, reuse_stage1=False, **settings)
