"""Time to allocate a stage-2 budget over many prompts with each strategy.

Run: .venv/bin/python benchmarks/allocation_speed.py [--prompts 1000000] [--repeats 3]
Target (issue 2): well under one second for gvm-rounding, a few seconds at most for gvm.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from gvm_raft.allocation import STRATEGIES, allocate, gradient_variance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--samples-per-prompt", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    m = args.prompts
    accept_rates = rng.integers(0, args.samples_per_prompt + 1, m) / args.samples_per_prompt
    grad_norms = np.where(accept_rates > 0, rng.gamma(2.0, 50.0, m), 0.0)
    budget = args.samples_per_prompt * m
    print(f"{m:,} prompts, budget {budget:,} samples, best of {args.repeats}")
    print(f"{'strategy':<13} {'caps':<12} {'seconds':>8} {'variance vs uniform':>20}")
    uniform = allocate(grad_norms, accept_rates, budget, "uniform").n_samples
    v_uniform = gradient_variance(uniform, grad_norms, accept_rates, alpha=1e-3)
    for caps in [{}, {"min_samples": 1, "max_samples": 4 * args.samples_per_prompt}]:
        for method in STRATEGIES:
            if method == "knapsack" and not caps:
                continue  # its greedy costs O(m N) without a per-prompt cap
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                n = allocate(grad_norms, accept_rates, budget, method, **caps).n_samples
                best = min(best, time.perf_counter() - start)
            ratio = gradient_variance(n, grad_norms, accept_rates, alpha=1e-3) / v_uniform
            label = "min 1, max 32" if caps else "none"
            print(f"{method:<13} {label:<12} {best:>8.3f} {ratio:>20.4f}")


if __name__ == "__main__":
    main()
