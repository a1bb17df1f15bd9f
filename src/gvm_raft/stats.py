"""Per-prompt statistics files: the input of ``gvm-raft allocate``.

One JSON object per line with ``index`` (the prompt's position, 0..m-1, any order),
``grad_norm`` (G_i) and either ``accept_rate`` (p_i) or ``accepted`` and ``sampled`` counts
(p_i = accepted / sampled).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gvm_raft.fileio import atomic_write_text


class StatsFileError(ValueError):
    """A statistics file that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class PromptStats:
    """Statistics of m prompts, ordered by prompt index."""

    grad_norms: np.ndarray  # (m,) G_i
    accept_rates: np.ndarray  # (m,) p_i in [0, 1]


def read_prompt_stats(path: str | os.PathLike[str]) -> PromptStats:
    """Read a statistics file; every problem is reported with its line number."""
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise StatsFileError(f"{source}: no such statistics file") from None
    except UnicodeDecodeError as err:
        raise StatsFileError(f"{source}: not UTF-8 text ({err.reason})") from None
    rows: dict[int, tuple[float, float]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        index, grad_norm, accept_rate = _parse_row(line, where)
        if index in rows:
            raise StatsFileError(f"{where}: index {index} appears twice")
        rows[index] = (grad_norm, accept_rate)
    if not rows:
        raise StatsFileError(f"{source}: no statistics rows")
    missing = sorted(set(range(len(rows))) - rows.keys())
    if missing:
        raise StatsFileError(
            f"{source}: indices must be 0..{len(rows) - 1} with none missing; "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    values = np.array([rows[i] for i in range(len(rows))], dtype=np.float64)
    return PromptStats(grad_norms=values[:, 0], accept_rates=values[:, 1])


def write_prompt_stats(path: str | os.PathLike[str], stats: PromptStats) -> None:
    """Write statistics in the format read_prompt_stats reads (atomically)."""
    lines = [
        json.dumps({"index": i, "grad_norm": float(g), "accept_rate": float(p)})
        for i, (g, p) in enumerate(zip(stats.grad_norms, stats.accept_rates, strict=True))
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _parse_row(line: str, where: str) -> tuple[int, float, float]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise StatsFileError(f"{where}: not valid JSON ({err.msg})") from None
    if not isinstance(row, dict):
        raise StatsFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
    index = row.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise StatsFileError(f"{where}: 'index' must be a non-negative integer; got {index!r}")
    grad_norm = _number(row, "grad_norm", where)
    if "accept_rate" in row:
        accept_rate = _number(row, "accept_rate", where)
        if accept_rate > 1:
            raise StatsFileError(f"{where}: 'accept_rate' must lie in [0, 1]; got {accept_rate}")
    elif "accepted" in row and "sampled" in row:
        accepted, sampled = _number(row, "accepted", where), _number(row, "sampled", where)
        if sampled == 0 or accepted > sampled:
            raise StatsFileError(
                f"{where}: need 0 <= 'accepted' <= 'sampled' and 'sampled' > 0; "
                f"got {accepted:g} of {sampled:g}"
            )
        accept_rate = accepted / sampled
    else:
        raise StatsFileError(f"{where}: give either 'accept_rate' or both 'accepted' and 'sampled'")
    return index, grad_norm, accept_rate


def _number(row: dict, field: str, where: str) -> float:
    value = row.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StatsFileError(f"{where}: '{field}' must be a number; got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise StatsFileError(f"{where}: '{field}' must be finite and >= 0; got {value}")
    return float(value)
