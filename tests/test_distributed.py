"""Work sharing across processes: LPT assignment, and real 2-process (gloo) runs under
torch.distributed: a training step equal to the single-process step, and a training run with
identical allocations, balanced stage-2 work and one writer."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from launch import TESTS, torchrun, write_run_config
from safetensors.torch import load_file
from sharded_on_cpu import ENGINES

from gvm_raft.config import load_config
from gvm_raft.distributed import contiguous_share, lpt_assign, worker_loads
from gvm_raft.trainer import train

NEEDS_DEEPSPEED = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None,
    reason="deepspeed is not installed (pip install -e .[deepspeed])",
)


def engine_param(*values, slow: bool = False):
    """A parameter set whose last value is the engine; DeepSpeed engines need deepspeed. slow:
    only in `make test-all` (a path another parameter set of the default run already covers)."""
    marks = [NEEDS_DEEPSPEED] if values[-1].startswith("zero") else []
    return pytest.param(*values, marks=[*marks, pytest.mark.slow] if slow else marks)


@pytest.mark.parametrize("seed", range(20))
def test_lpt_keeps_loads_within_the_largest_item(seed):
    rng = np.random.default_rng(seed)
    loads = rng.integers(0, 30, int(rng.integers(0, 12))).tolist()
    workers = int(rng.integers(1, 5))
    owners = lpt_assign(loads, workers)
    totals = worker_loads(loads, owners, workers)
    assert sum(totals) == sum(loads)
    assert max(totals) - min(totals) <= max(loads, default=0)
    assert lpt_assign(loads, workers) == owners  # deterministic


def test_lpt_hand_case_and_shares():
    # 5 -> worker 0; 4 -> worker 1; 2 -> worker 1 (4 < 5); 1 -> worker 0 (5 < 6): loads 6 and 6
    assert lpt_assign([5, 1, 4, 2], 2) == [0, 0, 1, 1]
    for count, world in itertools.product(range(7), range(1, 4)):
        shares = [list(contiguous_share(count, r, world)) for r in range(world)]
        assert [i for share in shares for i in share] == list(range(count))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


@pytest.mark.parametrize(
    ("algorithm", "mini", "micro", "engine"),
    [
        # shares of 6 and 5: the second process pads a weight-0 micro-batch
        *[engine_param("raft++", 11, 5, engine) for engine in ENGINES],
        # two optimizer steps, the last of 3 samples (ZeRO-2 accumulates as ZeRO-3 does)
        *[engine_param("grpo", 8, 2, engine, slow=engine == "zero2") for engine in ENGINES],
    ],
)
def test_two_process_step_equals_the_single_process_step(
    tiny_world, tmp_path, algorithm, mini, micro, engine
):
    from distributed_step import precision, step

    out = tmp_path / "params.pt"
    script = str(TESTS / "distributed_step.py")
    args = [str(tiny_world), algorithm, str(mini), str(micro), str(out), engine]
    done = torchrun(script, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    two = torch.load(out)
    one = step(tiny_world, algorithm, mini, micro, dtype=precision(engine))
    atol = 1e-6 if engine.startswith("zero") else 1e-8  # DeepSpeed runs in fp32
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-5, atol=atol)


def metric_rows(run_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]


def test_two_process_training_run(tiny_world, tmp_path):
    config = write_run_config(
        tiny_world, tmp_path / "config.yaml", tmp_path / "run", "iterations: 3"
    )
    done = torchrun("-m", "gvm_raft.cli", "train", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("run directory:") == 1
    run = tmp_path / "run"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    allocations = [
        json.loads(line) for line in (run / "allocations.jsonl").read_text().split("\n") if line
    ]
    assert [m["iteration"] for m in metrics] == [0, 1, 2, 3]  # one writer: no duplicate rows
    assert [a["iteration"] for a in allocations] == [1, 2, 3]
    for row, allocation in zip(metrics[1:], allocations, strict=True):
        assert sum(allocation["n_samples"]) == 20
        assert row["samples/stage1"] + row["samples/stage2"] == 20
        extra = [n - 2 for n in allocation["n_samples"]]
        spread = row["stage2/max_process_samples"] - row["stage2/min_process_samples"]
        assert spread <= max(extra)
        assert row["stage2/max_process_samples"] + row["stage2/min_process_samples"] == sum(extra)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iteration-000003", "latest"]


@pytest.mark.parametrize(
    "engine",
    # ZeRO-2 saves and loads through the same DeepSpeed engine calls as ZeRO-3 (about a minute)
    [engine_param("fsdp2"), engine_param("zero2", slow=True), engine_param("zero3")],
)
def test_sharded_run_trains_checkpoints_and_resumes(tiny_world, tmp_path, engine):
    """Under FSDP2 and ZeRO-3 the rollouts run on a whole-parameter replica refreshed after each
    update (ZeRO-2 updates the whole parameters in place): the saved policy moves away from the
    initial model, and a run stopped after iteration 2 and resumed (optimizer state loaded back
    into the shards) repeats the uninterrupted run."""
    script = str(TESTS / "sharded_on_cpu.py")
    full, cut = tmp_path / "full", tmp_path / "cut"
    runs = [
        (full, "iterations: 3", "resume: false"),
        (cut, "iterations: 2", "resume: false"),
        (cut, "iterations: 3", "resume: true"),
    ]
    for i, (run_dir, *extra) in enumerate(runs):
        config = write_run_config(tiny_world, tmp_path / f"config{i}.yaml", run_dir, *extra)
        done = torchrun(script, engine, "train", str(config))
        assert done.returncode == 0, done.stderr[-3000:]
    assert metric_rows(cut) == metric_rows(full)
    assert [m["iteration"] for m in metric_rows(full)] == [0, 1, 2, 3]
    initial = load_file(tiny_world / "model" / "model.safetensors")
    for run_dir in (full, cut):
        saved = load_file(
            run_dir / "checkpoints" / "iteration-000003" / "model" / "model.safetensors"
        )
        assert saved.keys() == initial.keys()
        moved = max((saved[k].double() - initial[k].double()).abs().max().item() for k in saved)
        assert moved > 1e-4
    saved_full, saved_cut = (
        load_file(d / "checkpoints" / "iteration-000003" / "model" / "model.safetensors")
        for d in (full, cut)
    )
    for name, value in saved_full.items():
        torch.testing.assert_close(saved_cut[name], value)
    if engine == "fsdp2":  # the whole, name-keyed optimizer state resumes in one plain process
        config = write_run_config(tiny_world, tmp_path / "one.yaml", cut, "iterations: 4")
        train(load_config(config, ["resume=true"]), progress=False)
        assert [m["iteration"] for m in metric_rows(cut)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("engine", [engine_param(e) for e in ("fsdp2", "zero3")])
def test_sharded_run_in_bf16_with_checkpointing(tiny_world, tmp_path, engine):
    """Mixed precision and activation checkpointing as the GPU configs use them (FSDP2's bf16
    policy, DeepSpeed's bf16)."""
    run_dir = tmp_path / "run"
    extra = ("iterations: 1", "mixed_precision: bf16", "gradient_checkpointing: true")
    config = write_run_config(tiny_world, tmp_path / "config.yaml", run_dir, *extra)
    done = torchrun(str(TESTS / "sharded_on_cpu.py"), engine, "train", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    row = metric_rows(run_dir)[1]
    assert row["train/optimizer_steps"] >= 1 and np.isfinite(row["train/loss"])
