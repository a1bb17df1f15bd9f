"""Reward functions, TRL style: ``fn(prompts, completions, **columns) -> list[float | None]``.

Dataset columns arrive as keyword lists; the reference answer is the ``answer`` keyword.
Built in: "arithmetic" (exact integer in the last box) and "math" (math-verify in time-limited
worker processes). Any other name is "module:function", imported like Python code (the
working directory is on the path): a config can run code through this setting, so run only
configs you trust.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from gvm_raft.errors import ConfigError
from gvm_raft.rewards.arithmetic import arithmetic_reward

RewardFn = Callable[..., list]


def arithmetic_reward_fn(
    prompts: Sequence[str], completions: Sequence[str], answer: Sequence[str], **columns: object
) -> list[float]:
    return [arithmetic_reward(c, a) for c, a in zip(completions, answer, strict=True)]


def load_reward(name: str, timeout: float = 5.0) -> RewardFn:
    """The reward function called ``name``; close it with ``close_reward`` when done.
    timeout: seconds per math-verify check (reward "math")."""
    if name == "arithmetic":
        return arithmetic_reward_fn
    if name == "math":
        from gvm_raft.rewards.math import MathVerifier

        return MathVerifier(timeout=timeout)
    module, sep, attribute = name.partition(":")
    if not sep:
        raise ConfigError(f"reward must be 'arithmetic', 'math' or 'module:function'; got {name!r}")
    if os.getcwd() not in sys.path:  # a reward file in the working directory, as python -m
        sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(
            f"reward {name!r} cannot be loaded: {err} (the module must be importable: on "
            "PYTHONPATH, installed, or a .py file in the working directory)"
        ) from None
    if not callable(fn):
        raise ConfigError(f"reward {name!r} is a {type(fn).__name__}, not a function")
    return fn


def close_reward(fn: RewardFn) -> None:
    close = getattr(fn, "close", None)
    if callable(close):
        close()
