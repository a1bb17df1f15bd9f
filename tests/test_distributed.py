"""Work sharing across processes: LPT assignment, and real 2-process (gloo) runs under
torch.distributed: a training step equal to the single-process step, and a training run with
identical allocations, balanced stage-2 work and one writer."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gvm_raft.distributed import contiguous_share, lpt_assign, worker_loads

TESTS = Path(__file__).parent


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


def torchrun(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(
    ("algorithm", "mini", "micro"),
    [
        ("raft++", 11, 5),  # shares of 6 and 5: the second process pads a weight-0 micro-batch
        ("grpo", 8, 2),  # two optimizer steps, the last of 3 samples
    ],
)
def test_two_process_step_equals_the_single_process_step(
    tiny_world, tmp_path, algorithm, mini, micro
):
    from distributed_step import step

    out = tmp_path / "params.pt"
    script = str(TESTS / "distributed_step.py")
    done = torchrun(script, str(tiny_world), algorithm, str(mini), str(micro), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    two = torch.load(out)
    one = step(tiny_world, algorithm, mini, micro)
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-5, atol=1e-8)


def test_two_process_training_run(tiny_world, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "\n".join(
            [
                f"model_name_or_path: {tiny_world / 'model'}",
                f"train_file: {tiny_world / 'data/train.jsonl'}",
                f"test_file: {tiny_world / 'data/test.jsonl'}",
                f"output_dir: {tmp_path / 'run'}",
                "reward: parity_reward:even_code_point_sum",
                "prompt_template: plain",
                "iterations: 3",
                "prompts_per_iteration: 5",
                "num_generations: 4",
                "stage1_samples: 2",
                "max_completion_length: 12",
                "mini_batch_size: 7",
                "micro_batch_size: 3",
                "eval_samples: 2",
                "learning_rate: 1.0e-3",
            ]
        )
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
        assert sum(allocation["samples"]) == 20
        assert row["samples/stage1"] + row["samples/stage2"] == 20
        extra = [n - 2 for n in allocation["samples"]]
        spread = row["stage2/max_process_samples"] - row["stage2/min_process_samples"]
        assert spread <= max(extra)
        assert row["stage2/max_process_samples"] + row["stage2/min_process_samples"] == sum(extra)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iteration-000003", "latest"]
