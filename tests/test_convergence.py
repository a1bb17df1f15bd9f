"""The convergence harness: speed-up arithmetic on hand-made curves, and a tiny end-to-end run."""

from __future__ import annotations

import pytest

from gvm_raft.convergence import (
    first_reach,
    make_arms,
    run_arms,
    speedup,
    summarise,
    write_results,
)
from gvm_raft.demo import bundled_config


def rows(accuracy, tokens_per_iteration):
    return [
        {"iteration": i, "test/accuracy": a, "tokens/cumulative": i * tokens_per_iteration}
        for i, a in enumerate(accuracy)
    ]


def test_first_reach_and_speedup():
    assert first_reach([0, 1, 2, 3], [0.1, 0.2, 0.4, 0.3], 0.3) == 2
    assert first_reach([0, 1], [0.1, 0.2], 0.3) is None
    assert first_reach([0, 1, 2], [0.5, 0.1, 0.6], 0.4) == 2  # the base model does not count
    assert speedup(6.0, 2.0) == 3.0
    assert speedup(6.0, None) == 0.0  # the arm never reaches the target
    assert speedup(None, 2.0) is None


def test_summary_on_hand_made_curves():
    results = {
        "raft++/uniform": [rows([0.30, 0.32, 0.34, 0.36], 100)] * 2,
        "raft++/gvm": [rows([0.30, 0.36, 0.36, 0.37], 150)] * 2,
    }
    targets, uniform, gvm = summarise(results, "raft++/uniform")
    assert targets["targets"] == {"best": pytest.approx(0.36), "half": pytest.approx(0.33)}
    assert uniform["speedup_steps_best"] == 1.0
    # best 0.36: uniform at iteration 3 (300 tokens), GVM at iteration 1 (150 tokens)
    assert gvm["speedup_steps_best"] == 3.0
    assert gvm["speedup_tokens_best"] == 2.0
    # half 0.33: uniform at iteration 2 (200 tokens), GVM at 1 (150 tokens)
    assert gvm["speedup_steps_half"] == 2.0
    assert gvm["speedup_tokens_half"] == pytest.approx(200 / 150)
    assert gvm["speedup_steps_best_seeds"] == [3.0, 3.0]
    assert list(gvm["final"]) == [0.37, 0.37]


def test_unknown_arm_is_named():
    with pytest.raises(ValueError, match="unknown arms gvm-fast"):
        make_arms(["raft++"], ["uniform"], ["gvm-fast"], 8, 64)


def test_tiny_benchmark_end_to_end(tiny_world, tmp_path):
    arms = make_arms(["raft++", "grpo"], ["uniform", "gvm"], ["gvm-online"], 4, 8)
    assert [a.label for a in arms] == [
        "raft++/uniform",
        "raft++/gvm",
        "raft++/gvm-online",
        "grpo/uniform",
        "grpo/gvm",
    ]
    overrides = [
        f"model_name_or_path={tiny_world / 'model'}",
        f"train_file={tiny_world / 'data/train.jsonl'}",
        f"test_file={tiny_world / 'data/test.jsonl'}",
        "reward=parity_reward:even_code_point_sum",
        "iterations=2",
        "prompts_per_iteration=4",
        "num_generations=4",
        "stage1_samples=2",
        "max_completion_length=12",
        "mini_batch_size=8",
        "micro_batch_size=8",
        "eval_samples=2",
        "learning_rate=1e-3",
    ]
    out = tmp_path / "bench"
    results = run_arms(arms, [0], bundled_config("convergence.yaml"), out, overrides, False)
    assert all(len(runs) == 1 and len(runs[0]) == 3 for runs in results.values())
    text = write_results(results, out, {"raft++": "raft++/uniform", "grpo": "grpo/uniform"})
    assert text.count("| raft++/") == 3 and text.count("| grpo/") == 2
    assert (out / "results.md").exists()
    for name in ("convergence_raftpp.png", "convergence_grpo.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    again = run_arms(arms[:1], [0], bundled_config("convergence.yaml"), out, overrides, False)
    assert again["raft++/uniform"] == results["raft++/uniform"]  # finished runs are only read
    untrained = make_arms(["raft++"], ["knapsack"], [], 4, 8)
    report_only = run_arms(
        arms + untrained, [0], bundled_config("convergence.yaml"), out, overrides, False, False
    )
    assert list(report_only) == list(results)  # nothing trained, the missing arm left out
