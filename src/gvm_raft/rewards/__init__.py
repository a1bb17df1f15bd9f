"""Reward functions, TRL style: ``fn(prompts, completions, **columns) -> list[float | None]``.

Dataset columns arrive as keyword lists; the reference answer is the ``answer`` keyword.
Built in: "arithmetic" (exact integer in the last box), "exact" (the answer's exact text in
the last box) and "math" (math-verify in time-limited
worker processes). Any other name is "module:function", imported like Python code (the
working directory is on the path): a config can run code through this setting, so run only
configs you trust.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from gvm_raft.errors import ConfigError, UserError
from gvm_raft.rewards.arithmetic import arithmetic_reward, exact_reward

RewardFn = Callable[..., list]


def completion_text(completion: str | list[dict[str, str]]) -> str:
    """A completion's text: itself, or the content of a conversational completion's message."""
    return completion if isinstance(completion, str) else completion[-1]["content"]


def arithmetic_reward_fn(
    prompts: Sequence[object], completions: Sequence[object], answer: Sequence[str], **columns
) -> list[float]:
    return [
        arithmetic_reward(completion_text(c), a) for c, a in zip(completions, answer, strict=True)
    ]


def exact_reward_fn(
    prompts: Sequence[object], completions: Sequence[object], answer: Sequence[str], **columns
) -> list[float]:
    return [exact_reward(completion_text(c), a) for c, a in zip(completions, answer, strict=True)]


BUILT_IN = {"arithmetic": arithmetic_reward_fn, "exact": exact_reward_fn}


def load_reward(name: str, timeout: float = 5.0) -> RewardFn:
    """The reward function called ``name``; close it with ``close_reward`` when done.
    timeout: seconds per math-verify check (reward "math")."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    if name in ("math", "math-unboxed"):
        from gvm_raft.rewards.math import MathVerifier

        return MathVerifier(timeout=timeout, require_boxed=name == "math")
    module, sep, attribute = name.partition(":")
    if not sep:
        raise ConfigError(
            "reward must be 'arithmetic', 'exact', 'math', 'math-unboxed' or 'module:function'; "
            f"got {name!r}"
        )
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


RewardSpec = str | RewardFn | Sequence[str | RewardFn]


def load_rewards(
    spec: RewardSpec, weights: Sequence[float] | None = None, timeout: float = 5.0
) -> RewardFn:
    """One reward function from a spec: a name ("arithmetic", "math", "module:function", or
    several comma-separated), a callable, or a list of either; several are combined with
    ``weights`` (default 1 each) as TRL's reward_weights: the weighted sum of their rewards."""
    items = spec.split(",") if isinstance(spec, str) else [spec] if callable(spec) else list(spec)
    funcs: list[RewardFn] = []
    try:
        for item in items:
            fn = load_reward(item.strip(), timeout) if isinstance(item, str) else item
            if not callable(fn):
                raise ConfigError(f"reward_funcs: {fn!r} is not a function")
            funcs.append(fn)
    except BaseException:
        for fn in funcs:  # a verifier already started
            close_reward(fn)
        raise
    if weights is not None and len(weights) != len(funcs):
        for fn in funcs:
            close_reward(fn)
        raise ConfigError(
            f"reward_weights has {len(weights)} weights for {len(funcs)} reward functions: give "
            "one per function"
        )
    if len(funcs) == 1 and (weights is None or weights[0] == 1.0):
        return funcs[0]
    return WeightedRewards(funcs, list(weights) if weights is not None else [1.0] * len(funcs))


class WeightedRewards:
    """sum_j w_j r_j(completion) over reward functions r_j; a function's None (no opinion on a
    completion) counts as 0, and a completion no function scores stays None."""

    def __init__(self, funcs: Sequence[RewardFn], weights: Sequence[float]) -> None:
        self.funcs, self.weights = list(funcs), list(weights)

    def __call__(self, prompts: Sequence[object], completions: Sequence[object], **columns):
        totals: list[float | None] = [None] * len(completions)
        for fn, weight in zip(self.funcs, self.weights, strict=True):
            rewards = call_reward(fn, prompts, completions, **columns)
            for i, reward in enumerate(rewards):
                if reward is not None:
                    totals[i] = (totals[i] or 0.0) + weight * float(reward)
        return totals

    @property
    def counts(self) -> dict[str, int]:
        """The verifiers' check counts, summed (see MathVerifier.counts)."""
        merged: dict[str, int] = {}
        for fn in self.funcs:
            for key, value in getattr(fn, "counts", {}).items():
                merged[key] = merged.get(key, 0) + value
        return merged

    def close(self) -> None:
        for fn in self.funcs:
            close_reward(fn)


def reward_name(fn: RewardFn) -> str:
    """How a message names a reward function: its name, or its class's."""
    if isinstance(fn, WeightedRewards):
        return " + ".join(
            f"{w:g} x {reward_name(f)}" for f, w in zip(fn.funcs, fn.weights, strict=True)
        )
    return getattr(fn, "__name__", type(fn).__name__)


def call_reward(
    fn: RewardFn, prompts: Sequence[object], completions: Sequence[object], **columns: Any
) -> list[float | None]:
    """``fn(prompts=, completions=, **columns)`` as TRL calls a reward, its output checked:
    one number (or None) per completion, or a UserError naming the function and the fix (a
    function that does not take the dataset's columns, a scalar, a generator, text)."""
    name = reward_name(fn)
    try:
        inspect.signature(fn).bind(prompts=prompts, completions=completions, **columns)
    except TypeError as err:
        raise UserError(
            f"reward {name} cannot take TRL's arguments (prompts=, completions= and every dataset "
            f"column as a keyword: {', '.join(columns)}): {err}; give it a **kwargs parameter"
        ) from None
    except ValueError:  # no signature to read (a builtin): call it and see
        pass
    rewards = fn(prompts=prompts, completions=completions, **columns)
    if hasattr(rewards, "tolist"):  # numpy arrays, torch tensors
        rewards = rewards.tolist()
    if isinstance(rewards, (str, bytes, dict)) or not isinstance(rewards, (list, tuple)):
        raise UserError(
            f"reward {name} returned a {type(rewards).__name__}: return a list with one reward "
            f"per completion ({len(completions)} here)"
        )
    if len(rewards) != len(completions):
        raise UserError(
            f"the reward function {name} gave {len(rewards)} rewards for {len(completions)} "
            "completions"
        )
    for index, reward in enumerate(rewards):
        if reward is not None and not isinstance(reward, numbers.Real):
            raise UserError(
                f"reward {name} returned {reward!r} for completion {index}: rewards must be "
                "numbers, or None for no reward"
            )
    return [None if r is None else float(r) for r in rewards]


def close_reward(fn: RewardFn) -> None:
    close = getattr(fn, "close", None)
    if callable(close):
        close()
