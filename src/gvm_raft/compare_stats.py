"""The comparison's statistics: speed-ups, mean accuracy over iterations, bootstrap intervals.

Speed-ups against uniform, for a target accuracy (uniform's best mean accuracy, and the level
halfway from the base model to it), the crossing interpolated linearly between evaluations:
- step-matched: iterations uniform needs to first reach the target / iterations the arm needs;
- compute-matched: the same with generated tokens (stage 1 + stage 2, refills included).
Headline figures use the mean curve over seeds, with a 95% bootstrap interval: seeds resampled
with replacement (the same seeds for the arm and uniform), targets and speed-up recomputed on
each resample's mean curves. Reaching a target is counted from iteration 1 on: the base model's
evaluation does not count. Mean accuracy over iterations 1..T (the area under the curve per
iteration) is compared seed by seed: the paired differences and a bootstrap interval of their
mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gvm_raft.report import ACCURACY, curves

X_AXES = {"steps": "iteration", "tokens": "tokens/cumulative"}


def first_reach(xs: Sequence[float], accuracy: Sequence[float], target: float) -> float | None:
    """The first x (iteration or tokens) after the start (index 0, the base model) at which
    the accuracy reaches the target, interpolated linearly between the evaluation before and
    the first one at or above the target (so a speed-up is not rounded to the evaluation grid);
    None when it never does. A base model already above the target does not count."""
    for j in range(1, len(xs)):
        if accuracy[j] >= target - 1e-12:
            before, after = accuracy[j - 1], accuracy[j]
            if before >= target or after == before:
                return float(xs[j])
            share = (target - before) / (after - before)
            return float(xs[j - 1] + share * (xs[j] - xs[j - 1]))
    return None


def targets_of(accuracy: np.ndarray) -> dict[str, float]:
    """Targets from a baseline curve (index 0 = base model): its best accuracy after the start,
    and the level halfway from the base to it."""
    best = float(accuracy[1:].max()) if accuracy.size > 1 else float(accuracy[0])
    return {"best": best, "half": float(accuracy[0]) + 0.5 * (best - float(accuracy[0]))}


def speedup(baseline: float | None, arm: float | None) -> float | None:
    """baseline cost / arm cost; None when the baseline misses; 0 when only the arm misses."""
    if baseline is None:
        return None
    if arm is None:
        return 0.0
    return baseline / arm if arm > 0 else float("inf")


BOOTSTRAP_RESAMPLES = 2_000


def mean_over_iterations(accuracy: np.ndarray) -> np.ndarray:
    """Per seed, the mean accuracy over iterations 1..T (the base model at index 0 left out):
    the area under the accuracy curve per iteration."""
    return accuracy[:, 1:].mean(1) if accuracy.shape[1] > 1 else accuracy[:, 0]


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float | None], seeds: int, seed: int = 0
) -> tuple[float, float] | None:
    """95% percentile interval of ``statistic(indices)`` over seed indices resampled with
    replacement; resamples where the statistic is undefined (None) are dropped. None when
    there are fewer than two seeds or no defined resample."""
    if seeds < 2:
        return None
    rng = np.random.default_rng(seed)
    values = [statistic(rng.integers(0, seeds, seeds)) for _ in range(BOOTSTRAP_RESAMPLES)]
    defined = np.array([v for v in values if v is not None], dtype=float)
    if not defined.size:
        return None
    low, high = np.percentile(defined, [2.5, 97.5])
    return float(low), float(high)


def mean_curve_speedup(
    x_base: np.ndarray,
    acc_base: np.ndarray,
    x_arm: np.ndarray,
    acc_arm: np.ndarray,
    target_name: str,
) -> float | None:
    """Speed-up of the arm's mean curve over the baseline's, to a target of the baseline's mean
    curve (see ``targets_of``)."""
    base_mean = acc_base.mean(0)
    target = targets_of(base_mean)[target_name]
    return speedup(
        first_reach(x_base.mean(0), base_mean, target),
        first_reach(x_arm.mean(0), acc_arm.mean(0), target),
    )


def summarise(results: dict[str, list[list[dict]]], baseline: str) -> list[dict[str, Any]]:
    """Per arm: accuracies, speed-ups against the baseline arm (paired seeds) with bootstrap
    intervals, mean accuracy over iterations and its paired difference from the baseline,
    optimizer steps per iteration, the estimated gradient variance against uniform and the
    evaluation's standard error. Row 0 holds the targets."""
    base = {kind: curves(results[baseline], key) for kind, key in X_AXES.items()}
    base_acc = base["steps"][1]
    targets = targets_of(base_acc.mean(0))
    table: list[dict[str, Any]] = [{"targets": targets}]
    for label, runs in results.items():
        arm = {kind: curves(runs, key) for kind, key in X_AXES.items()}
        acc = arm["steps"][1]
        paired = min(len(runs), len(base_acc))
        auc_diff = mean_over_iterations(acc[:paired]) - mean_over_iterations(base_acc[:paired])
        row: dict[str, Any] = {
            "arm": label,
            "seeds": len(runs),
            "final": acc[:, -1],
            "best": acc[:, 1:].max(1) if acc.shape[1] > 1 else acc[:, 0],
            "auc": mean_over_iterations(acc),
            "auc_diff_seeds": auc_diff,
            "auc_diff_interval": bootstrap_interval(
                lambda idx, d=auc_diff: float(d[idx].mean()), paired
            ),
            "optimizer_steps": _mean_metric(runs, "train/optimizer_steps"),
            "accepted": _accepted_per_iteration(runs),
            "variance_ratio": _mean_metric(runs, "allocation/variance_ratio"),
            "eval_se": _mean_metric(runs, "test/accuracy_se", skip_base=False),
            "tokens": arm["tokens"][0][:, -1],
        }
        for kind in X_AXES:
            x_arm, x_base = arm[kind][0][:paired], base[kind][0][:paired]
            y_arm, y_base = acc[:paired], base_acc[:paired]
            for name in targets:
                row[f"speedup_{kind}_{name}"] = mean_curve_speedup(
                    base[kind][0], base_acc, arm[kind][0], acc, name
                )
                row[f"speedup_{kind}_{name}_interval"] = bootstrap_interval(
                    lambda idx, k=name, xa=x_arm, xb=x_base, ya=y_arm, yb=y_base: (
                        mean_curve_speedup(xb[idx], yb[idx], xa[idx], ya[idx], k)
                    ),
                    paired,
                )
                row[f"speedup_{kind}_{name}_seeds"] = [
                    speedup(
                        first_reach(x_base[s], base_acc[s], targets_of(base_acc[s])[name]),
                        first_reach(x_arm[s], acc[s], targets_of(base_acc[s])[name]),
                    )
                    for s in range(paired)
                ]
        table.append(row)
    return table


GROUP_PREFIX = "test/accuracy/"


def by_group(results: dict[str, list[list[dict]]], baseline: str) -> dict[str, dict[str, Any]]:
    """Per group of the test set (``eval_group_column``'s metrics, those every evaluation of
    every baseline run logs): the baseline's mean accuracy over iterations (mean over seeds)
    and each other arm's paired difference from it, per seed and with a bootstrap interval
    (None for an arm whose runs did not log the group)."""
    base_rows = [r for rows in results[baseline] for r in rows if ACCURACY in r]
    if not base_rows:
        return {}
    groups = [k for k in base_rows[0] if k.startswith(GROUP_PREFIX)]
    groups = [g for g in groups if all(g in r for r in base_rows)]
    table: dict[str, dict[str, Any]] = {}
    for group in groups:
        base = mean_over_iterations(curves(results[baseline], "iteration", group)[1])
        row: dict[str, Any] = {"baseline": float(base.mean())}
        for label, runs in results.items():
            if label == baseline:
                continue
            if not all(group in r for rows in runs for r in rows if ACCURACY in r):
                row[label] = None
                continue
            paired = min(len(runs), len(base))
            accuracy = curves(runs, "iteration", group)[1]
            diff = mean_over_iterations(accuracy[:paired]) - base[:paired]
            interval = bootstrap_interval(lambda idx, d=diff: float(d[idx].mean()), paired)
            row[label] = (diff, interval)
        table[group.removeprefix(GROUP_PREFIX)] = row
    return table


def _mean_metric(runs: list[list[dict]], key: str, skip_base: bool = True) -> float:
    values = [r[key] for rows in runs for r in rows[int(skip_base) :] if key in r]
    return float(np.mean(values)) if values else float("nan")


def _accepted_per_iteration(runs: list[list[dict]]) -> float:
    """Accepted samples in the M-step's batch per iteration, mean over iterations and seeds."""
    values = [
        r["train/samples"] * r["train/accept_rate"]
        for rows in runs
        for r in rows[1:]
        if "train/samples" in r and "train/accept_rate" in r
    ]
    return float(np.mean(values)) if values else float("nan")
