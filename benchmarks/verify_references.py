"""Verification accuracy of the real-math path on public evaluation sets.

For every row of each file: load it as the trainer does (``data.load_prompts``: answers of any
type normalised, unusable rows skipped and counted), wrap the reference answer in ``\\boxed{}``
as a model would write it, and check that the math verifier accepts it against itself; as a
control, check each row's answer against the next row's reference, which it should match only
when the two answers are equal. Prints, per file, rows loaded / skipped, self-verification
failures with examples, and control acceptances (with how many of them are equal strings).
Run: .venv/bin/python benchmarks/verify_references.py ../shared/data/math-eval/*.jsonl
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from gvm_raft.data import load_prompts
from gvm_raft.rewards.math import MathVerifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--examples", type=int, default=3, help="failures shown per file")
    args = parser.parse_args()
    print("| file | rows | skipped | verified | failed | control accepted (equal) | seconds |")
    print("|---|---|---|---|---|---|---|")
    failures: dict[str, list[str]] = {}
    with MathVerifier() as verifier:
        for path in args.files:
            total = sum(1 for line in path.read_text().splitlines() if line.strip())
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always")
                rows = load_prompts(path)
            start = time.perf_counter()
            answers = [row.answer for row in rows]
            rewards = verifier(
                [""] * len(rows), [f"\\boxed{{{a}}}" for a in answers], answer=answers
            )
            failed = [a for a, r in zip(answers, rewards, strict=True) if r != 1.0]
            failures[path.stem] = failed
            shifted = answers[1:] + answers[:1]
            control = verifier(
                [""] * len(rows), [f"\\boxed{{{a}}}" for a in shifted], answer=answers
            )
            accepted = [(a, b) for a, b, r in zip(answers, shifted, control, strict=True) if r]
            equal = sum(a.strip() == b.strip() for a, b in accepted)
            print(
                f"| {path.stem} | {total} | {total - len(rows)} | {len(rows) - len(failed)} "
                f"| {len(failed)} | {len(accepted)} ({equal}) | {time.perf_counter() - start:.1f} |"
            )
    for name, failed in failures.items():
        for answer in failed[: args.examples]:
            print(f"{name}: not self-verified: {answer[:120]!r}")


if __name__ == "__main__":
    main()
