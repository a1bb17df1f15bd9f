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

``with_step_errors`` turns demonstrations into the kind of chains a pretrained LLM samples: each
step slips (one digit of its result is wrong) with a given probability and the wrong value is
carried on to the boxed answer. A policy warm-started on them reproduces the slips when sampling
at temperature 1 but keeps the right digit as its most likely one, so its greedy answers and its
pass@k are far above its pass@1: the headroom reinforcement from its own samples can take.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """A difficulty level: ``ops`` steps, each applying one of ``operators`` to the running value.

    Added/subtracted operands have ``digits`` digits (multiplications a one-digit factor 2-9);
    the starting number has ``start_digits`` (default ``digits``). With ``max_value`` every
    intermediate value stays in [0, max_value] (an addition that would leave it becomes a
    subtraction and vice versa), so a level's steps come from a small set of facts that the
    warm start sees many times: the difficulty is then the length of the chain alone.

    A ``family`` writes its numbers and operators in its own ``symbols`` (``in_symbols``) and
    may err at its own ``step_error_rate`` in its own way, ``step_error`` (``STEP_ERRORS``):
    families that share no digit or operator token and whose errors differ are separate
    skills, so learning one need not help another (``FAMILY_LEVELS``).
    """

    ops: int
    digits: int
    operators: str = "+-*"
    start_digits: int | None = None
    max_value: int | None = None
    family: str = ""
    symbols: str = "0123456789+-*"  # how the digits 0-9 and the operators + - * are written
    step_error_rate: float | None = None  # the demonstrations' error rate (None: the world's)
    step_error: str = "slip"  # how a demonstration's step errs (a key of STEP_ERRORS)


CLASSIC_LEVELS: tuple[Level, ...] = (
    Level(ops=1, digits=1),
    Level(ops=2, digits=1),
    Level(ops=1, digits=2),
    Level(ops=2, digits=2),
    Level(ops=3, digits=2),
    Level(ops=4, digits=2),
)
CHAIN_LEVELS: tuple[Level, ...] = tuple(
    Level(ops=ops, digits=1, operators="+-", max_value=19) for ops in (2, 3, 4, 5, 6, 8)
)
DEFAULT_LEVELS = CHAIN_LEVELS
# Four families of chains (1, 2 and 3 steps on numbers up to 19), each written in its own digits
# and operators (no token of a step is shared between families, nor with the box command's
# letters) and each with its own misconception, which its demonstrations follow at a rate above
# one half: the model's most likely step is then its family's wrong one, so sampling more
# sharply (a habit every family would share) makes it worse, and only unlearning the family's
# own error helps. Headroom differs by family through its rate.
FAMILIES = (
    ("digits", "0123456789+-*", "off-by-one", 0.55),
    ("lower", "fghijklmnp&%*", "other-op", 0.6),
    ("upper", "ABCDEFGHIJ<>*", "no-step", 0.6),
    ("kilo", "KLMNOPQRST^~*", "operand", 0.65),
)
FAMILY_LEVELS: tuple[Level, ...] = tuple(
    Level(
        ops,
        1,
        "+-",
        max_value=19,
        family=name,
        symbols=symbols,
        step_error_rate=rate,
        step_error=error,
    )
    for name, symbols, error, rate in FAMILIES
    for ops in (1, 2, 3)
)
SPLITS = ("sft", "train", "test")


def make_problem(rng: random.Random, level: Level, difficulty: int) -> dict:
    """One problem row; ``difficulty`` is the level's 1-based number."""
    _check_level(level)
    value = _operand(rng, level.start_digits or level.digits)
    expression = str(value)
    lines = []
    for step in range(level.ops):
        op = rng.choice(level.operators)
        operand = rng.randint(2, 9) if op == "*" else _operand(rng, level.digits)
        result = {"+": value + operand, "-": value - operand, "*": value * operand}[op]
        if level.max_value is not None and not 0 <= result <= level.max_value:
            op = "-" if op == "+" else "+"
            result = value + operand if op == "+" else value - operand
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


def _check_level(level: Level) -> None:
    if level.step_error not in STEP_ERRORS:
        raise ValueError(f"a level's step_error is one of {', '.join(STEP_ERRORS)}; got {level}")
    if level.ops < 1 or level.digits < 1 or (level.start_digits or 1) < 1:
        raise ValueError(f"a level needs ops, digits and start_digits >= 1; got {level}")
    if not level.operators or set(level.operators) - set("+-*"):
        raise ValueError(f"a level's operators are some of '+-*'; got {level.operators!r}")
    if (
        len(level.symbols) != 13
        or len(set(level.symbols)) != 13
        or set(level.symbols) & set("\\{}()=\n")
    ):
        raise ValueError(
            "a level's symbols are 13 distinct characters (digits 0-9, then + - *), none of "
            f"\\ {{ }} ( ) = or a newline; got {level.symbols!r}"
        )
    if level.max_value is not None:
        start = level.start_digits or level.digits
        if "*" in level.operators or level.max_value < max(10**start, 10**level.digits) - 1:
            raise ValueError(
                "a level's max_value needs operators from '+-' and room for every operand "
                f"(at least 10^digits - 1); got {level}"
            )


def generate_splits(
    sizes: dict[str, int], seed: int = 0, levels: tuple[Level, ...] = DEFAULT_LEVELS
) -> dict[str, list[dict]]:
    """Disjoint splits (no problem text, as written in its level's symbols, in two splits),
    levels drawn uniformly, seeded; rows stay in decimal (``in_symbols`` writes them).

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
            written = to_symbols(row["problem"], levels[number])
            if written not in seen:
                seen.add(written)
                rows.append(row)
        splits[name] = rows
    return splits


STEP = re.compile(r"(-?\d+)([+*-])(\d+)=(-?\d+)")


def with_step_errors(row: dict, error_rate: float, rng: random.Random, error: str = "slip") -> dict:
    """``row`` with its solution rewritten: each step errs with probability ``error_rate`` in
    the way ``error`` names (``STEP_ERRORS``), and every later step starts from the value
    actually written. ``answer`` stays the true answer; the boxed one is the chain's own."""
    if not 0.0 <= error_rate < 1.0:
        raise ValueError(f"error_rate must be in [0, 1); got {error_rate}")
    wrong = STEP_ERRORS[error]
    *steps, _ = row["solution"].split("\n")
    lines = []
    value = None
    for line in steps:
        first, op, operand, _ = STEP.fullmatch(line).groups()
        value = int(first) if value is None else value
        result = _apply(value, op, int(operand))
        if rng.random() < error_rate:
            result = wrong(value, op, int(operand), result, rng)
        lines.append(f"{value}{op}{operand}={result}")
        value = result
    lines.append(f"\\boxed{{{value}}}")
    return row | {"solution": "\n".join(lines)}


def _apply(value: int, op: str, operand: int) -> int:
    return {"+": value + operand, "-": value - operand, "*": value * operand}[op]


def slip(value: int, rng: random.Random) -> int:
    """``value`` with one of its digits replaced by another (no new leading zero): the
    arithmetic slip of a written chain of thought."""
    digits = list(str(abs(value)))
    position = rng.randrange(len(digits))
    lowest = 1 if position == 0 and len(digits) > 1 else 0
    digits[position] = rng.choice([d for d in "0123456789"[lowest:] if d != digits[position]])
    return int("".join(digits)) * (-1 if value < 0 else 1)


# How a demonstration's step errs, as f(value, op, operand, right result, rng) -> written
# result: a random slip of one digit (the right digit stays the most likely one), or one of the
# systematic misconceptions of the families world.
STEP_ERRORS = {
    "slip": lambda value, op, operand, result, rng: slip(result, rng),
    "off-by-one": lambda value, op, operand, result, rng: result + 1,
    "other-op": lambda value, op, operand, result, rng: _apply(
        value, {"+": "-", "-": "+", "*": "+"}[op], operand
    ),
    "no-step": lambda value, op, operand, result, rng: value,
    "operand": lambda value, op, operand, result, rng: operand,
}


def to_symbols(text: str, level: Level) -> str:
    """Decimal text written in the level's symbols (the box command stays as it is)."""
    return text.translate(str.maketrans("0123456789+-*", level.symbols))


def in_symbols(row: dict, level: Level) -> dict:
    """A decimal row written in its level's symbols, with its family named when it has one."""
    written = {key: to_symbols(row[key], level) for key in ("problem", "answer", "solution")}
    return row | written | ({"family": level.family} if level.family else {})


def format_prompt(problem: str) -> str:
    """The prompt the tiny model sees: the expression and a newline; the solution follows."""
    return f"{problem}\n"


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)
