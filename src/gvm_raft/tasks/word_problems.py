"""Grade-school word problems with numeric answers, of graded difficulty: the task of the
real-model smoke run (``make smoke-real``), for a small pretrained chat model.

Level 1 is one addition or subtraction in words; level 2 chains two; level 3 starts from a
product ("3 boxes of 4 pencils") and then adds or takes away. Numbers stay small and every
intermediate count positive, so the arithmetic is within a 135M-parameter model's reach.

    python -m gvm_raft.tasks.word_problems OUT_DIR [--per-level 16] [--seed 0]

writes OUT_DIR/train.jsonl (all levels) and OUT_DIR/level-{1,2,3}.jsonl (held out, one file per
level, so that ``gvm-raft eval`` reports each level's accuracy), rows {problem, answer,
difficulty}.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from gvm_raft.fileio import write_jsonl

NAMES = ("Tom", "Sara", "Ali", "Mia", "Ben", "Lena", "Omar", "Zoe")
ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies")
CONTAINERS = ("boxes", "bags", "packs")
LEVELS = (1, 2, 3)


def _change(rng: random.Random, count: int, item: str) -> tuple[str, int]:
    """One step in words: gains or loses a few (never below 1); the sentence and the count."""
    if count > 3 and rng.random() < 0.5:
        lost = rng.randint(1, count - 1)
        return rng.choice([f"gives away {lost}", f"loses {lost}"]) + f" {item}", count - lost
    gained = rng.randint(2, 9)
    return rng.choice([f"buys {gained} more", f"finds {gained} more"]) + f" {item}", count + gained


def make_word_problem(level: int, rng: random.Random) -> dict:
    """One problem of the level: {problem, answer, difficulty}."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    if level == 3:
        groups, size = rng.randint(2, 5), rng.randint(2, 6)
        container = rng.choice(CONTAINERS)
        start = f"{name} has {groups} {container} with {size} {item} in each."
        count = groups * size
    else:
        count = rng.randint(3, 15)
        start = f"{name} has {count} {item}."
    steps = []
    for _ in range(2 if level == 2 else 1):
        sentence, count = _change(rng, count, item)
        steps.append(sentence)
    then = " Then ".join(f"{name} {s}." for s in steps)
    problem = f"{start} {then} How many {item} does {name} have now?"
    return {"problem": problem, "answer": str(count), "difficulty": level}


def word_problem_splits(per_level: int, seed: int = 0) -> dict[str, list[dict]]:
    """Train (per_level of each level) and one held-out split per level, disjoint."""
    rng = random.Random(f"{seed}/word-problems")
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {"train": []} | {f"level-{lv}": [] for lv in LEVELS}
    for level in LEVELS:
        for split in ("train", f"level-{level}"):
            rows = splits[split]
            target = len(rows) + per_level
            while len(rows) < target:
                row = make_word_problem(level, rng)
                if row["problem"] not in seen:
                    seen.add(row["problem"])
                    rows.append(row)
    return splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-level", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, rows in word_problem_splits(args.per_level, args.seed).items():
        write_jsonl(args.out / f"{name}.jsonl", rows)
        print(f"{args.out / name}.jsonl: {len(rows)} problems")


if __name__ == "__main__":
    main()
