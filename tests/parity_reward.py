"""A TRL-style custom reward for trainer tests: the tiny world's model solves almost nothing, so
this reward accepts about half of any model's samples (those whose code-point sum is even),
which exercises the accepted-sample paths (G_i > 0, non-uniform GVM allocations, updates)."""

from __future__ import annotations


def even_code_point_sum(prompts: list[str], completions: list[str], **columns) -> list[float]:
    return [float(sum(map(ord, completion)) % 2 == 0) for completion in completions]
