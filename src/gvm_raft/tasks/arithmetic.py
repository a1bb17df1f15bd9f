"""The embedded task: multi-step integer arithmetic with a written chain of thought.

A problem applies ``ops`` operations left to right to a starting number, written with explicit
parentheses so the usual precedence rules agree: ``((12+7)*3)-5``. Additions and subtractions
take operands of ``digits`` digits; multiplications take a one-digit factor (2-9), so numbers
stay short. The solution writes one line per step and ends with the answer boxed, the same
convention as real math data:

    12+7=19
    19*3=57
    57-5=52
    \\boxed{52}

Difficulty levels grow with the number of steps and digits; answers are Python integers.
Rows have the schema of a user's math dataset: ``problem``, ``answer``, ``difficulty``
(plus ``solution``, the demonstration used for the warm start).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """A difficulty level: number of operations and digits of the added/subtracted operands."""

    ops: int
    digits: int


DEFAULT_LEVELS: tuple[Level, ...] = (
    Level(ops=1, digits=1),
    Level(ops=2, digits=1),
    Level(ops=1, digits=2),
    Level(ops=2, digits=2),
    Level(ops=3, digits=2),
    Level(ops=4, digits=2),
)
SPLITS = ("sft", "train", "test")


def make_problem(rng: random.Random, level: Level, difficulty: int) -> dict:
    """One problem row; ``difficulty`` is the level's 1-based number."""
    if level.ops < 1 or level.digits < 1:
        raise ValueError(f"a level needs ops >= 1 and digits >= 1; got {level}")
    value = _operand(rng, level.digits)
    expression = str(value)
    lines = []
    for step in range(level.ops):
        op = rng.choice("+-*")
        operand = rng.randint(2, 9) if op == "*" else _operand(rng, level.digits)
        result = {"+": value + operand, "-": value - operand, "*": value * operand}[op]
        lines.append(f"{value}{op}{operand}={result}")
        expression = f"({expression}){op}{operand}" if step else f"{expression}{op}{operand}"
        value = result
    lines.append(f"\\boxed{{{value}}}")
    return {
        "problem": expression,
        "answer": str(value),
        "difficulty": difficulty,
        "solution": "\n".join(lines),
    }


def generate_splits(
    sizes: dict[str, int], seed: int = 0, levels: tuple[Level, ...] = DEFAULT_LEVELS
) -> dict[str, list[dict]]:
    """Disjoint splits (no problem text in two splits), levels drawn uniformly, seeded.

    ``sizes`` maps split names to row counts; splits are filled in the order given.
    """
    for name, size in sizes.items():
        if size < 0:
            raise ValueError(f"split {name!r} needs a non-negative size; got {size}")
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {}
    for name, size in sizes.items():
        rows: list[dict] = []
        attempts = 0
        while len(rows) < size:
            attempts += 1
            if attempts > 100 * size + 1000:
                raise ValueError(
                    f"could not draw {size} distinct problems for split {name!r}: the levels "
                    "have too few distinct problems; add levels or lower the split sizes"
                )
            number = rng.randrange(len(levels))
            row = make_problem(rng, levels[number], number + 1)
            if row["problem"] not in seen:
                seen.add(row["problem"])
                rows.append(row)
        splits[name] = rows
    return splits


def format_prompt(problem: str) -> str:
    """The prompt the tiny model sees: the expression and a newline; the solution follows."""
    return f"{problem}\n"


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)
