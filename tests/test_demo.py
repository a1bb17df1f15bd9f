"""``gvm-raft demo``: uniform and GVM trained paired on one world, their summary and plot."""

from __future__ import annotations

import json

import pytest
from conftest import TINY_RUN

from gvm_raft.demo import demo_summary, run_demo
from gvm_raft.errors import UserError


def rows(accuracy: list[float], tokens: int, seconds: float) -> list[dict]:
    return [
        {"iteration": i, "test/accuracy": a, "tokens/cumulative": tokens * i / 2}
        | ({"time/iteration": seconds} if i else {})
        for i, a in enumerate(accuracy)
    ]


def test_the_summary_gives_each_arm_and_their_difference():
    results = {
        "raft++/uniform": [rows([0.2, 0.3, 0.5], 1000, 30.0)],
        "raft++/gvm": [rows([0.2, 0.4, 0.45], 1200, 15.0)],
    }
    lines = demo_summary(results, ["raft++/uniform", "raft++/gvm"]).splitlines()
    assert lines[1].split() == ["raft++/uniform", "0.200", "0.500", "0.400", "1,000", "1.0"]
    assert lines[2].split() == ["raft++/gvm", "0.200", "0.450", "0.425", "1,200", "0.5"]
    # final -0.050, mean over iterations 1..2: 0.425 - 0.400
    assert lines[3].split() == ["difference", "+0.000", "-0.050", "+0.025", "+200", "-0.5"]


def test_the_demo_trains_both_arms_paired_and_plots_them(tiny_world, tmp_path):
    settings = [f"{k}={v}" for k, v in (TINY_RUN | {"iterations": 1}).items()]
    summary = run_demo(str(tiny_world), str(tmp_path / "demo"), settings, progress=False)
    runs = tmp_path / "demo/runs/raft++"
    metrics = {
        arm: [json.loads(line) for line in (runs / arm / "seed-0/metrics.jsonl").open()]
        for arm in ("uniform", "gvm")
    }
    assert metrics["uniform"][0]["test/accuracy"] == metrics["gvm"][0]["test/accuracy"]
    allocations = {
        arm: json.loads((runs / arm / "seed-0/allocations.jsonl").read_text().splitlines()[0])
        for arm in ("uniform", "gvm")
    }
    assert allocations["uniform"]["row_id"] == allocations["gvm"]["row_id"]  # the same prompts
    assert set(allocations["uniform"]["n_samples"]) == {TINY_RUN["num_generations"]}
    difference = metrics["gvm"][1]["test/accuracy"] - metrics["uniform"][1]["test/accuracy"]
    assert summary.splitlines()[3].split()[2] == f"{difference:+.3f}"
    assert (tmp_path / "demo/demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="allocation=uniform leaves the demo nothing"):
        run_demo(str(tiny_world), str(tmp_path / "demo"), [*settings, "allocation=uniform"])
