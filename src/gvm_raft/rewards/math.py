"""Verifier of real math answers: the last ``\\boxed{}`` against the gold answer, by math-verify.

Checks run in a pool of worker processes with a hard per-check time limit (see ``pool``); the
boxed answer is extracted here first (linear time, bounded length), so megabytes of model
output never reach the workers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache

from gvm_raft.rewards import completion_text
from gvm_raft.rewards.boxed import last_boxed
from gvm_raft.rewards.pool import TimeLimitedPool

MAX_ANSWER_CHARS = 2_000
UNBOXED_TAIL_CHARS = 500
WARN_FRACTION = 0.05  # timeouts + failed checks in one call above this fraction: warn


def answers_match(prediction: str, reference: str, boxed: bool = True) -> float:
    """1.0 when math-verify finds the prediction equivalent to the gold answer, else 0.0.

    prediction: the content of a box (boxed=True) or free text whose final expression is judged.
    Runs in a worker process (math-verify's SIGALRM timeouts work in a process's main thread).
    """
    from math_verify import parse, verify

    gold = _parse_reference(reference)
    guess = parse(f"\\boxed{{{prediction}}}" if boxed else prediction)
    return 1.0 if gold and guess and verify(gold, guess) else 0.0


def warm_up() -> None:
    """A worker's start-up, outside the per-check time limit: import math-verify and sympy and
    run one check, so that a broken install fails here, loudly."""
    if answers_match("2", "2") != 1.0:
        raise RuntimeError("math-verify does not verify 2 = 2")


@lru_cache(maxsize=4096)
def _parse_reference(reference: str) -> list:
    from math_verify import parse

    return parse(reference if "\\boxed" in reference else f"\\boxed{{{reference}}}")


class MathVerifier:
    """A reward function ``(prompts, completions, answer, **columns) -> list[float]``.

    correct / wrong: rewards for a verified and for any other answer. require_boxed: with
    False, a completion without a box is judged on its last ``UNBOXED_TAIL_CHARS`` characters.
    timeout: seconds per check, the workers' start-up excluded. ``counts``: checks, timeouts,
    errors and worker restarts so far; a call where timeouts and errors pass WARN_FRACTION of
    its checks warns, since its rewards may be wrong.
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
        self.pool = TimeLimitedPool(answers_match, workers=workers, timeout=timeout, warm=warm_up)
        self.timeout = timeout

    @property
    def counts(self) -> dict[str, int]:
        return {key: self.pool.counts[key] for key in ("checks", "timeouts", "errors", "restarts")}

    def __call__(
        self,
        prompts: Sequence[object],
        completions: Sequence[object],
        answer: Sequence[str],
        **columns: object,
    ) -> list[float]:
        tasks, owners = [], []
        for i, (raw, reference) in enumerate(zip(completions, answer, strict=True)):
            completion = completion_text(raw)
            boxed = last_boxed(completion, max_chars=MAX_ANSWER_CHARS)
            if boxed is not None:
                tasks.append((_clean(boxed), _clean(str(reference)), True))
            elif not self.require_boxed:
                tail = completion[-UNBOXED_TAIL_CHARS:]
                tasks.append((_clean(tail), _clean(str(reference)), False))
            else:
                continue
            owners.append(i)
        before = self.counts
        rewards = [self.wrong] * len(completions)
        for i, verified in zip(owners, self.pool.map(tasks), strict=True):
            rewards[i] = self.correct if verified == 1.0 else self.wrong
        failed = sum(self.counts[k] - before[k] for k in ("timeouts", "errors"))
        if tasks and failed > WARN_FRACTION * len(tasks):
            warnings.warn(
                f"math reward: {failed} of {len(tasks)} checks timed out or failed and scored "
                f"{self.wrong}: rewards may be wrong; if the machine is loaded, raise "
                f"reward_timeout (now {self.timeout:g} s per check)",
                stacklevel=2,
            )
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
