"""Verifiers of the embedded tasks: the last ``\\boxed{}`` holds the exact integer
(``arithmetic_reward``) or the answer's exact text (``exact_reward``: answers in any symbols)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from gvm_raft.errors import DataError
from gvm_raft.rewards.boxed import last_boxed

_INTEGER = re.compile(r"[+-]?\d{1,100}")


def arithmetic_reward(
    completion: str, answer: str, correct: float = 1.0, wrong: float = 0.0
) -> float:
    """``correct`` when the last boxed content is the integer ``answer``, else ``wrong``."""
    boxed = last_boxed(completion, max_chars=120)
    if boxed is None:
        return wrong
    boxed = boxed.strip()
    if not _INTEGER.fullmatch(boxed):
        return wrong
    return correct if int(boxed) == int(answer) else wrong


def exact_reward(completion: str, answer: str, correct: float = 1.0, wrong: float = 0.0) -> float:
    """``correct`` when the last boxed content, stripped, is ``answer``'s text, else ``wrong``."""
    boxed = last_boxed(completion, max_chars=120)
    return correct if boxed is not None and boxed.strip() == str(answer).strip() else wrong


def check_integer_answers(answers: Sequence[str | None], source: str) -> None:
    """Refuse, before training or evaluating, a dataset whose answers the arithmetic reward
    cannot compare (it reads integers): the first bad row named, and the fix."""
    for row, answer in enumerate(answers):
        if answer is None or not _INTEGER.fullmatch(str(answer).strip()):
            raise DataError(
                f"reward=arithmetic compares integers, but row {row} of {source} has the answer "
                f"{answer!r}: use reward=math for other answers"
            )
