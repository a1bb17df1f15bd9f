"""reward=math on a starved CPU: pinned to one core beside a busy process, at low priority.

Before the time limit excluded the workers' start-up (spawn + math-verify and sympy imports,
4-5 s on a loaded 2-core machine), such a verifier killed every worker before it could answer
and scored every correct answer 0. This pins the process (and its workers) to core 0, starts a
process that keeps core 0 busy, lowers its own priority, and asks the verifier to check correct
and wrong answers. Prints how many correct answers were rewarded, the time to start and to
check, and the verifier's counts (timeouts, restarts, errors).

Run: .venv/bin/python benchmarks/verifier_under_load.py [--answers 20] [--timeout 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

from gvm_raft.rewards.math import MathVerifier


def burn() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})  # inherited by the burner and the verifier's workers
    burner = multiprocessing.get_context("spawn").Process(target=burn, daemon=True)
    burner.start()
    os.nice(10)
    try:
        tic = time.perf_counter()
        with MathVerifier(workers=2, timeout=args.timeout) as verifier:
            started = time.perf_counter() - tic
            references = [str(3 * i + 1) for i in range(args.answers)]
            correct = [f"so the answer is \\boxed{{{r}}}" for r in references]
            wrong = [f"\\boxed{{{int(r) + 1}}}" for r in references]
            tic = time.perf_counter()
            rewards = verifier(["p"] * 2 * args.answers, correct + wrong, references * 2)
            checked = time.perf_counter() - tic
            counts = verifier.counts
    finally:
        burner.kill()
    print(
        f"pinned to core 0 beside a busy process, nice 10: verifier ready in {started:.1f} s; "
        f"{sum(rewards[: args.answers]):.0f}/{args.answers} correct answers rewarded, "
        f"{sum(rewards[args.answers :]):.0f}/{args.answers} wrong ones; checked in "
        f"{checked:.1f} s; counts {counts}"
    )


if __name__ == "__main__":
    main()
