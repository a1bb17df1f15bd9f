"""The variance each arm's allocation gives the estimator its algorithm trains with uniform's
target, on the runs' own statistics.

For every iteration of every run under a comparison's runs/<algorithm>/<arm>/seed-*, from its
allocations.jsonl (the stage-1 estimates p_i, G_i the allocation used and its sizes n_i), the
variance of the estimator weighted to keep uniform's target, against uniform allocation's
(n_i = nbar) on the same prompts and estimates (docs/estimators.md): for RAFT / RAFT++ the
accuracy estimator's sum_i p_i G_i^2 / n_i (section 2), for GRPO the group-normalised one's
sum_i G_i^2 d_nbar^2 (n_i - 1) P_{n_i} / d_{n_i}^2 (section 4); the mean over iterations and
seeds per arm, with its 10th and 90th percentiles. Prompts with no target by these estimates
(p_i G_i = 0, and for GRPO also p_i = 1) contribute nothing.

Run: .venv/bin/python benchmarks/estimator_variance.py benchmarks/results/chains
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gvm_raft.estimators import accuracy_variance, grpo_variance
from gvm_raft.rundir import read_allocations, recorded_settings


def variance_ratios(run_dir: Path) -> list[float]:
    """Per iteration: the trained estimator's variance at the run's sizes over the same at nbar
    samples per prompt (the run's algorithm picks the estimator; RAFT++ when none is recorded)."""
    settings = recorded_settings(run_dir)
    nbar = settings["num_generations"]

    def variance(n: np.ndarray, g: list[float], p: list[float]) -> float:
        if settings.get("algorithm") == "grpo":
            return grpo_variance(n, g, p, nbar)
        return accuracy_variance(n, g, p)

    ratios = []
    for row in read_allocations(run_dir):
        p, g, n = row["accept_rate"], row["grad_norm"], np.asarray(row["n_samples"])
        uniform = variance(np.full(len(n), nbar), g, p)
        if uniform > 0:
            ratios.append(variance(n, g, p) / uniform)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", type=Path, help="a comparison (or archive) directory")
    args = parser.parse_args()
    print("| arm | seeds | trained estimator's variance / uniform's: mean [10%, 90%] |")
    print("|---|---|---|")
    for arm in sorted((args.comparison / "runs").glob("*/*")):
        runs = sorted(arm.glob("seed-*"))
        ratios = np.array([r for run in runs for r in variance_ratios(run)])
        low, high = np.percentile(ratios, [10, 90])
        label = f"{arm.parent.name}/{arm.name}"
        print(f"| {label} | {len(runs)} | {ratios.mean():.2f} [{low:.2f}, {high:.2f}] |")


if __name__ == "__main__":
    main()
