"""Verifier of real math answers: the last ``\\boxed{}`` compared with the reference by math-verify.

Checks run in a pool of worker processes with a hard per-check time limit (see ``pool``); the
boxed answer is extracted here first (linear time, bounded length), so megabytes of model
output never reach the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from gvm_raft.rewards.boxed import last_boxed
from gvm_raft.rewards.pool import TimeLimitedPool

MAX_ANSWER_CHARS = 2_000
UNBOXED_TAIL_CHARS = 500


def answers_match(prediction: str, reference: str, boxed: bool = True) -> float:
    """1.0 when math-verify finds the prediction equivalent to the reference, else 0.0.

    prediction: the content of a box (boxed=True) or free text whose final expression is judged.
    Runs in a worker process (math-verify's SIGALRM timeouts work in a process's main thread).
    """
    from math_verify import parse, verify

    gold = _parse_reference(reference)
    guess = parse(f"\\boxed{{{prediction}}}" if boxed else prediction)
    return 1.0 if gold and guess and verify(gold, guess) else 0.0


@lru_cache(maxsize=4096)
def _parse_reference(reference: str) -> list:
    from math_verify import parse

    return parse(reference if "\\boxed" in reference else f"\\boxed{{{reference}}}")


class MathVerifier:
    """A reward function ``(prompts, completions, answer, **columns) -> list[float]``.

    correct / wrong: rewards for a verified and for any other answer. require_boxed: with
    False, a completion without a box is judged on its last ``UNBOXED_TAIL_CHARS`` characters.
    """

    def __init__(
        self,
        workers: int = 2,
        timeout: float = 5.0,
        correct: float = 1.0,
        wrong: float = 0.0,
        require_boxed: bool = True,
    ) -> None:
        self.correct, self.wrong, self.require_boxed = correct, wrong, require_boxed
        self.pool = TimeLimitedPool(answers_match, workers=workers, timeout=timeout)

    def __call__(
        self,
        prompts: Sequence[str],
        completions: Sequence[str],
        answer: Sequence[str],
        **columns: object,
    ) -> list[float]:
        tasks, owners = [], []
        for i, (completion, reference) in enumerate(zip(completions, answer, strict=True)):
            boxed = last_boxed(completion, max_chars=MAX_ANSWER_CHARS)
            if boxed is not None:
                tasks.append((_clean(boxed), _clean(str(reference)), True))
            elif not self.require_boxed:
                tail = completion[-UNBOXED_TAIL_CHARS:]
                tasks.append((_clean(tail), _clean(str(reference)), False))
            else:
                continue
            owners.append(i)
        rewards = [self.wrong] * len(completions)
        for i, verified in zip(owners, self.pool.map(tasks), strict=True):
            rewards[i] = self.correct if verified == 1.0 else self.wrong
        return rewards

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _clean(text: str) -> str:
    """Valid UTF-8 only: lone surrogates and other unencodable characters become U+FFFD."""
    return text.encode("utf-8", errors="replace").decode("utf-8")
