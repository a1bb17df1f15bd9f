"""The variance each arm's allocation gives the estimator RAFT / RAFT++ trains with uniform's
target, on the runs' own statistics.

For every iteration of every run under a comparison's runs/<algorithm>/<arm>/seed-*, from its
allocations.jsonl (the stage-1 estimates p_i, G_i the allocation used and its sizes n_i): the
nbar/n_i-weighted accuracy estimator's variance sum_i p_i G_i^2 / n_i (docs/estimators.md,
section 2) against uniform allocation's (n_i = nbar) on the same prompts and estimates; the
mean over iterations and seeds per arm, with its 10th and 90th percentiles. Prompts with
p_i G_i = 0 (none of the stage-1 samples verified) contribute nothing by these estimates.

Run: .venv/bin/python benchmarks/estimator_variance.py benchmarks/results/chains
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gvm_raft.estimators import accuracy_variance
from gvm_raft.rundir import read_allocations, recorded_settings


def variance_ratios(run_dir: Path) -> list[float]:
    """Per iteration: sum p G^2 / n at the run's sizes over the same sum at nbar samples."""
    nbar = recorded_settings(run_dir)["num_generations"]
    ratios = []
    for row in read_allocations(run_dir):
        p, g, n = row["accept_rate"], row["grad_norm"], row["n_samples"]
        uniform = accuracy_variance(np.full(len(n), nbar), g, p)
        if uniform > 0:
            ratios.append(accuracy_variance(n, g, p) / uniform)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", type=Path, help="a comparison (or archive) directory")
    args = parser.parse_args()
    print("| arm | seeds | accuracy-estimator variance / uniform's: mean [10%, 90%] |")
    print("|---|---|---|")
    for arm in sorted((args.comparison / "runs").glob("*/*")):
        runs = sorted(arm.glob("seed-*"))
        ratios = np.array([r for run in runs for r in variance_ratios(run)])
        low, high = np.percentile(ratios, [10, 90])
        label = f"{arm.parent.name}/{arm.name}"
        print(f"| {label} | {len(runs)} | {ratios.mean():.2f} [{low:.2f}, {high:.2f}] |")


if __name__ == "__main__":
    main()
