"""The benchmark scripts' own logic: transfer_check's split of a world's rows by group,
estimator_variance's ratio on hand-computed allocations, score_norms' variance ratios."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gvm_raft.config import GVMConfig
from gvm_raft.fileio import read_jsonl, write_jsonl
from gvm_raft.rundir import append_allocation

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from estimator_variance import variance_ratios
from score_norms import Measured
from score_norms import variance_ratios as score_norm_ratios
from transfer_check import split_by_group


def test_rows_are_split_by_family_where_there_is_one_else_by_level(tmp_path):
    rows = [
        {"problem": "a", "difficulty": 1, "family": "lower"},
        {"problem": "b", "difficulty": 2, "family": "upper"},
        {"problem": "c", "difficulty": 1, "family": "lower"},
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    files = split_by_group(tmp_path / "train.jsonl", tmp_path / "out")
    assert {g: [r["problem"] for r in read_jsonl(f)] for g, f in files.items()} == {
        "lower": ["a", "c"],
        "upper": ["b"],
    }
    write_jsonl(tmp_path / "test.jsonl", [{"problem": "d", "difficulty": 3}])
    assert list(split_by_group(tmp_path / "test.jsonl", tmp_path / "out")) == ["3"]


def test_the_accuracy_estimators_variance_ratio_by_hand(tmp_path):
    (tmp_path / "config.yaml").write_text("num_generations: 8\n")
    # p G^2 = (2, 0): at n = (4, 12) the variance is 2/4, at nbar = 8 it is 2/8
    row = {"iteration": 1, "accept_rate": [0.5, 0.0], "grad_norm": [2.0, 5.0]}
    append_allocation(tmp_path, row | {"n_samples": [4, 12]})
    append_allocation(tmp_path, row | {"iteration": 2, "n_samples": [16, 0]})
    assert variance_ratios(tmp_path) == [2.0, 0.5]


def test_grpo_runs_get_the_group_normalised_estimators_variance_ratio_by_hand(tmp_path):
    (tmp_path / "config.yaml").write_text("num_generations: 2\nalgorithm: grpo\n")
    # the p = 1 prompt has no GRPO target (under RAFT++'s estimator, 0 samples would be inf);
    # the p = 1/2 one costs G^2 d_2^2 (n - 1) P_n / d_n^2 with d_2^2 = 1/8, P_2 = 1/2,
    # d_4 = (4 * 1.5 + 6 * sqrt(3) + 4 * 1.5) / 16, P_4 = 7/8
    row = {"iteration": 1, "accept_rate": [0.5, 1.0], "grad_norm": [2.0, 3.0]}
    append_allocation(tmp_path, row | {"n_samples": [4, 0]})
    d4 = (12 + 6 * np.sqrt(3)) / 16
    assert variance_ratios(tmp_path) == pytest.approx([(3 * 7 / 8 / 8 / d4**2) / 0.5])


def test_score_norms_ratios_agree_where_rejected_norms_equal_accepted_ones():
    """Equal norms: both allocations coincide and the model is the truth; rejected norms twice
    as long: the truth exceeds the model and measuring both kinds does better."""
    config = GVMConfig(algorithm="grpo", allocation="gvm-matched", stage1_samples=2)
    p = np.array([0.125, 0.25, 0.5, 0.75, 0.375, 0.0])
    norms = np.array([30.0, 25.0, 20.0, 15.0, 10.0, 5.0])
    lengths = np.full(p.size, 40.0)
    same = Measured(p, norms, norms, lengths, lengths)
    from_accepted, from_both, modelled = score_norm_ratios(config, same)
    assert from_accepted == from_both == pytest.approx(modelled) and modelled < 1
    longer = Measured(p, norms, 2 * norms, lengths, lengths)
    from_accepted, from_both, modelled = score_norm_ratios(config, longer)
    assert from_both < from_accepted and modelled < from_accepted
