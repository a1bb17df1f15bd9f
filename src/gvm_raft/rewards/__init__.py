"""Reward functions, TRL style: ``fn(prompts, completions, **columns) -> list[float | None]``.

Dataset columns arrive as keyword lists; the reference answer is the ``answer`` keyword.
Built in: "arithmetic" (exact integer in the last box) and "math" (math-verify in time-limited
worker processes). Any other name is "module:function".
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from gvm_raft.rewards.arithmetic import arithmetic_reward

RewardFn = Callable[..., list]


def arithmetic_reward_fn(
    prompts: Sequence[str], completions: Sequence[str], answer: Sequence[str], **columns: object
) -> list[float]:
    return [arithmetic_reward(c, a) for c, a in zip(completions, answer, strict=True)]


def load_reward(name: str) -> RewardFn:
    """The reward function called ``name``; close it with ``close_reward`` when done."""
    if name == "arithmetic":
        return arithmetic_reward_fn
    if name == "math":
        from gvm_raft.rewards.math import MathVerifier

        return MathVerifier()
    module, sep, attribute = name.partition(":")
    if not sep:
        raise ValueError(f"reward must be 'arithmetic', 'math' or 'module:function'; got {name!r}")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"reward {name!r} cannot be loaded: {err}") from None


def close_reward(fn: RewardFn) -> None:
    close = getattr(fn, "close", None)
    if callable(close):
        close()
