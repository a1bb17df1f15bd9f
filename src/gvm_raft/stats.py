"""Per-prompt statistics: acceptance-rate and gradient-norm estimates, and their files.

Estimates: p_i = accepted / sampled, or with a Beta(a, b) prior the posterior mean
(accepted + a) / (sampled + a + b); G_i = mean over the prompt's accepted samples of the
per-sample gradient norm. A visit with no accepted sample does not observe G_i:
- plain estimates (no prior, no moving average: the RLHFlow implementation) take G_i = 0, so such a
  prompt gets no samples (its p_i is 0 too);
- with a prior, a prompt whose G_i was never observed takes the median of the observed G_i of
  the prompts asked about (the batch), so a 0-of-k prompt, whose smoothed p_i is > 0, can
  still get samples: what the prior is for;
- with a prior or a moving average, a prompt seen before keeps its last observed G_i.
Across iterations, a prompt seen again blends its new p_i, and its new G_i when observed, into
the old ones with an exponential moving average (decay = weight of the old estimate).

Files (the input of ``gvm-raft allocate``): one JSON object per line with ``index`` (the
prompt's position, 0..m-1, any order), ``grad_norm`` (G_i) and either ``accept_rate`` (p_i) or
``accepted`` and ``sampled`` counts (p_i = accepted / sampled).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gvm_raft.errors import StatsFileError
from gvm_raft.fileio import atomic_write_text


@dataclass(frozen=True)
class PromptStats:
    """Statistics of m prompts, ordered by prompt index."""

    grad_norms: np.ndarray  # (m,) G_i
    accept_rates: np.ndarray  # (m,) p_i in [0, 1]


def accept_rate_estimate(
    accepted: np.ndarray, sampled: np.ndarray, prior: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """(accepted + a) / (sampled + a + b): the plain ratio for a = b = 0 (0 if nothing sampled)."""
    a, b = prior
    if a < 0 or b < 0:
        raise ValueError(f"the Beta prior needs a, b >= 0; got {prior}")
    accepted = np.asarray(accepted, dtype=np.float64)
    total = np.asarray(sampled, dtype=np.float64) + a + b
    return np.divide(accepted + a, total, out=np.zeros_like(accepted), where=total > 0)


def mean_accepted_grad_norm(norms: list[list[float]]) -> np.ndarray:
    """G_i: mean of each prompt's accepted-sample gradient norms, 0 for a prompt with none."""
    return np.array([float(np.mean(n)) if len(n) else 0.0 for n in norms], dtype=np.float64)


class RunningPromptStats:
    """Estimates per prompt (keyed by its dataset row id), blended across iterations.

    decay: weight of the previous estimate when a prompt is seen again (0 = latest only).
    prior: Beta(a, b) prior of the acceptance rate.
    """

    def __init__(self, decay: float = 0.0, prior: tuple[float, float] = (0.0, 0.0)) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1); got {decay}")
        accept_rate_estimate(np.zeros(1), np.ones(1), prior)
        self.decay = decay
        self.prior = tuple(float(v) for v in prior)
        self.accept_rate: dict[int, float] = {}
        self.grad_norm: dict[int, float] = {}

    def update(
        self,
        row_ids: list[int],
        accepted: np.ndarray,
        sampled: np.ndarray,
        grad_norms: np.ndarray,
    ) -> PromptStats:
        """Blend in one observation per prompt (G_i only where something was accepted; see the
        module docstring); returns the estimates of these prompts."""
        rates = accept_rate_estimate(accepted, sampled, self.prior)
        plain = self.decay == 0 and not self.smoothed
        for row_id, rate, norm, count in zip(row_ids, rates, grad_norms, accepted, strict=True):
            if row_id in self.accept_rate:
                rate = self.decay * self.accept_rate[row_id] + (1 - self.decay) * rate
            self.accept_rate[row_id] = float(rate)
            if count > 0:
                if row_id in self.grad_norm:
                    norm = self.decay * self.grad_norm[row_id] + (1 - self.decay) * norm
                self.grad_norm[row_id] = float(norm)
            elif plain:
                self.grad_norm[row_id] = 0.0
        return self.estimates(row_ids)

    @property
    def smoothed(self) -> bool:
        return sum(self.prior) > 0

    def estimates(self, row_ids: list[int]) -> PromptStats:
        """Current estimates; p of a prompt never seen is the prior mean (or 0); G never
        observed is, with a prior, the median of the observed G of these prompts, else 0."""
        unseen = float(accept_rate_estimate(np.zeros(1), np.zeros(1), self.prior)[0])
        observed = [self.grad_norm[row_id] for row_id in row_ids if row_id in self.grad_norm]
        fallback = float(np.median(observed)) if self.smoothed and observed else 0.0
        return PromptStats(
            grad_norms=np.array([self.grad_norm.get(row_id, fallback) for row_id in row_ids]),
            accept_rates=np.array([self.accept_rate.get(row_id, unseen) for row_id in row_ids]),
        )

    def seen(self, row_ids: list[int]) -> np.ndarray:
        """Whether each prompt has estimates from an earlier visit."""
        return np.array([row_id in self.accept_rate for row_id in row_ids], dtype=bool)

    def state_dict(self) -> dict:
        return {
            "accept_rate": {str(k): v for k, v in self.accept_rate.items()},
            "grad_norm": {str(k): v for k, v in self.grad_norm.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.accept_rate = {int(k): float(v) for k, v in state["accept_rate"].items()}
        self.grad_norm = {int(k): float(v) for k, v in state["grad_norm"].items()}


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


def write_prompt_stats(
    path: str | os.PathLike[str], stats: PromptStats, row_ids: Sequence[int] | None = None
) -> None:
    """Write statistics in the format read_prompt_stats reads (atomically); ``row_ids``
    (the prompts' dataset row ids) go in an extra ``row_id`` field that readers ignore."""
    lines = []
    for i, (g, p) in enumerate(zip(stats.grad_norms, stats.accept_rates, strict=True)):
        row = {"index": i, "grad_norm": float(g), "accept_rate": float(p)}
        if row_ids is not None:
            row["row_id"] = int(row_ids[i])
        lines.append(json.dumps(row))
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
