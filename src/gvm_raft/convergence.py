"""The convergence harness: allocation strategies against uniform allocation, over seeds.

Every arm trains from the same base model on the same train/test split with the same seeds,
the same stage-2 budget N per iteration, the same number of iterations and (except the
``gvm-steps-xn`` confound) the same optimizer steps per iteration; arms differ only in their
config overrides. Runs resume, so a killed benchmark continues where it stopped.

Speed-ups against uniform, for a target accuracy (uniform's best mean accuracy, and the level
halfway from the base model to it):
- step-matched: iterations uniform needs to first reach the target / iterations the arm needs;
- compute-matched: the same with generated tokens (stage 1 + stage 2, refills included).
Headline figures use the mean curve over seeds; the spread is over per-seed speed-ups (each
seed's arm against the uniform run of the same seed, with targets from that uniform run).
Reaching a target is counted from iteration 1 on: the base model's evaluation does not count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from gvm_raft.config import load_config
from gvm_raft.fileio import atomic_write_text
from gvm_raft.report import read_rows
from gvm_raft.run import METRICS_FILE
from gvm_raft.trainer import train

ACCURACY = "test/accuracy"
X_AXES = {"steps": "iteration", "tokens": "tokens/cumulative"}


@dataclass(frozen=True)
class Arm:
    """One configuration of the comparison: a name and its config overrides."""

    name: str
    algorithm: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.algorithm}/{self.name}"


STRATEGIES: dict[str, dict[str, Any]] = {
    "uniform": {"allocation": "uniform"},
    "gvm": {"allocation": "gvm"},
    "knapsack": {"allocation": "knapsack"},
    "dapo": {"allocation": "uniform", "dynamic_filtering": True},
}


def ablations(num_generations: int, mini_batch_size: int) -> dict[str, dict[str, Any]]:
    """GVM variants: G_i = 1, G_i of the per-token mean log-likelihood, alpha = 0, a smaller
    stage 1, online statistics, the reference fork's confound (num_generations times more
    optimizer steps), and uniform and GVM with the 1/(n_i p_i)-weighted M-step (the estimator
    whose variance GVM minimises)."""
    return {
        "gvm-G=1": {"allocation": "gvm", "gvm_use_grad_norms": False},
        "gvm-G=mean": {"allocation": "gvm", "grad_norm_reduction": "mean"},
        "gvm-alpha=0": {"allocation": "gvm", "gvm_alpha": 0.0},
        "gvm-k=2": {"allocation": "gvm", "stage1_samples": 2},
        "gvm-online": {"allocation": "gvm", "online_stats": True, "stage1_samples": 0},
        f"gvm-steps-x{num_generations}": {
            "allocation": "gvm",
            "mini_batch_size": max(1, mini_batch_size // num_generations),
        },
        "uniform-weighted": {"allocation": "uniform", "sample_weighting": "inverse_acceptance"},
        "gvm-weighted": {"allocation": "gvm", "sample_weighting": "inverse_acceptance"},
    }


def make_arms(
    algorithms: Sequence[str],
    strategies: Sequence[str],
    ablation_names: Sequence[str],
    num_generations: int,
    mini_batch_size: int,
) -> list[Arm]:
    """Every strategy for every algorithm; ablations for the first algorithm only, right after
    its strategies (so a benchmark cut short has the first algorithm complete)."""
    variants = ablations(num_generations, mini_batch_size)
    unknown = [s for s in strategies if s not in STRATEGIES] + [
        a for a in ablation_names if a not in variants
    ]
    if unknown:
        known = ", ".join([*STRATEGIES, *variants])
        raise ValueError(f"unknown arms {', '.join(unknown)} (known: {known})")
    arms = [Arm(s, algorithms[0], STRATEGIES[s]) for s in strategies]
    arms += [Arm(name, algorithms[0], variants[name]) for name in ablation_names]
    arms += [Arm(s, a, STRATEGIES[s]) for a in algorithms[1:] for s in strategies]
    return arms


def run_arms(
    arms: Iterable[Arm],
    seeds: Sequence[int],
    base_config: str | Path,
    out_dir: Path,
    overrides: Sequence[str] = (),
    progress: bool = True,
    train_missing: bool = True,
) -> dict[str, list[list[dict]]]:
    """Train (or resume, or just read) every arm for every seed; metric rows per arm and seed.

    With train_missing False nothing is trained: only finished runs are read, and arms without
    any are left out (a report on a benchmark still running).
    """
    results: dict[str, list[list[dict]]] = {}
    for arm in arms:
        runs = []
        for seed in seeds:
            run_dir = out_dir / "runs" / arm.algorithm / arm.name / f"seed-{seed}"
            arm_overrides = [f"{k}={v}" for k, v in arm.overrides.items()]
            config = load_config(
                base_config,
                [*overrides, f"algorithm={arm.algorithm}", *arm_overrides],
                output_dir=str(run_dir),
                seed=seed,
                resume=True,
            )
            rows = read_rows(run_dir / METRICS_FILE)
            if len(rows) <= config.iterations and train_missing:
                if progress:
                    print(f"== {arm.label} seed {seed} -> {run_dir}", flush=True)
                train(config, progress=progress)
                rows = read_rows(run_dir / METRICS_FILE)
            if len(rows) == config.iterations + 1:
                runs.append(rows)
        if runs:
            results[arm.label] = runs
    return results


def first_reach(xs: Sequence[float], accuracy: Sequence[float], target: float) -> float | None:
    """The first x (iteration or tokens) after the start (index 0, the base model) at which
    the accuracy reaches the target."""
    for x, value in zip(xs[1:], accuracy[1:], strict=True):
        if value >= target - 1e-12:
            return float(x)
    return None


def targets_of(accuracy: np.ndarray) -> dict[str, float]:
    """Targets from a baseline curve (index 0 = base model): its best accuracy after the start,
    and the level halfway from the base to it."""
    best = float(accuracy[1:].max()) if accuracy.size > 1 else float(accuracy[0])
    return {"best": best, "half": float(accuracy[0]) + 0.5 * (best - float(accuracy[0]))}


def curves(runs: list[list[dict]], x_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, accuracy) arrays of shape (seeds, iterations + 1), cut to the shortest run."""
    length = min(len(rows) for rows in runs)
    xs = np.array([[r.get(x_key, 0.0) for r in rows[:length]] for rows in runs], dtype=float)
    ys = np.array([[r[ACCURACY] for r in rows[:length]] for rows in runs], dtype=float)
    return xs, ys


def speedup(baseline: float | None, arm: float | None) -> float | None:
    """baseline cost / arm cost; None when the baseline misses; 0 when only the arm misses."""
    if baseline is None:
        return None
    if arm is None:
        return 0.0
    return baseline / arm if arm > 0 else float("inf")


def summarise(results: dict[str, list[list[dict]]], baseline: str) -> list[dict[str, Any]]:
    """Per arm: accuracies, speed-ups against the baseline arm (same seeds), optimizer steps per
    iteration and the estimated gradient variance against uniform. Row 0 holds the targets."""
    base = {kind: curves(results[baseline], key) for kind, key in X_AXES.items()}
    base_acc = base["steps"][1]
    base_mean = base_acc.mean(0)
    targets = targets_of(base_mean)
    table: list[dict[str, Any]] = [{"targets": targets}]
    for label, runs in results.items():
        arm = {kind: curves(runs, key) for kind, key in X_AXES.items()}
        acc = arm["steps"][1]
        row: dict[str, Any] = {
            "arm": label,
            "seeds": len(runs),
            "final": acc[:, -1],
            "best": acc[:, 1:].max(1) if acc.shape[1] > 1 else acc[:, 0],
            "optimizer_steps": _mean_metric(runs, "train/optimizer_steps"),
            "variance_ratio": _mean_metric(runs, "allocation/variance_ratio"),
            "tokens": arm["tokens"][0][:, -1],
        }
        for kind in X_AXES:
            x_arm, x_base = arm[kind][0], base[kind][0]
            for name, target in targets.items():
                row[f"speedup_{kind}_{name}"] = speedup(
                    first_reach(x_base.mean(0), base_mean, target),
                    first_reach(x_arm.mean(0), acc.mean(0), target),
                )
                row[f"speedup_{kind}_{name}_seeds"] = [
                    speedup(
                        first_reach(x_base[s], base_acc[s], targets_of(base_acc[s])[name]),
                        first_reach(x_arm[s], acc[s], targets_of(base_acc[s])[name]),
                    )
                    for s in range(min(len(runs), len(base_acc)))
                ]
        table.append(row)
    return table


def _mean_metric(runs: list[list[dict]], key: str) -> float:
    values = [r[key] for rows in runs for r in rows[1:] if key in r]
    return float(np.mean(values)) if values else float("nan")


def _spread(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def _speedup_text(mean: float | None, per_seed: list[float | None]) -> str:
    if mean is None:
        return "-"
    head = "not reached" if mean == 0 else f"{mean:.2f}x"
    reached = [s for s in per_seed if s]
    seeds = (
        f" ({min(reached):.2f}-{max(reached):.2f}, {len(reached)}/{len(per_seed)} seeds)"
        if reached
        else f" (0/{len(per_seed)} seeds)"
    )
    return head + seeds


def markdown_table(summary: list[dict[str, Any]]) -> str:
    targets = summary[0]["targets"]
    lines = [
        f"Targets: uniform's best mean accuracy {targets['best']:.3f}; halfway from the base "
        f"model {targets['half']:.3f}. Speed-ups: on the mean curve over seeds; in brackets "
        "the range over seeds, each against the uniform run of the same seed and its own "
        "targets, and how many seeds reached the target.",
        "",
        "| arm | final acc | best acc | steps/iter | var/uniform | speed-up (iterations) to best "
        "| to half | speed-up (tokens) to best | to half | tokens |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary[1:]:
        cells = [
            row["arm"],
            _spread(row["final"]),
            _spread(row["best"]),
            f"{row['optimizer_steps']:.0f}",
            f"{row['variance_ratio']:.2f}",
            *[
                _speedup_text(row[f"speedup_{kind}_{name}"], row[f"speedup_{kind}_{name}_seeds"])
                for kind in ("steps", "tokens")
                for name in ("best", "half")
            ],
            f"{row['tokens'].mean():,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, list[list[dict]]], out_dir: Path) -> list[Path]:
    """Accuracy against iteration and against generated tokens: mean and min-max band over
    seeds, one figure per algorithm."""
    written = []
    algorithms = sorted({label.split("/")[0] for label in results})
    for algorithm in algorithms:
        arms = {k: v for k, v in results.items() if k.split("/")[0] == algorithm}
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        for label, runs in arms.items():
            for ax, x_key in zip(axes, ("iteration", "tokens/cumulative"), strict=True):
                xs, ys = curves(runs, x_key)
                x = xs.mean(0)
                (line,) = ax.plot(x, ys.mean(0), label=label.split("/")[1], lw=1.5)
                ax.fill_between(x, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.12)
        for ax, x_label in zip(axes, ("iteration", "generated tokens (stage 1 + 2)"), strict=True):
            ax.set_xlabel(x_label)
            ax.set_ylabel("test accuracy (mean over samples)")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{algorithm}: mean and range over seeds")
        fig.tight_layout()
        path = out_dir / f"convergence_{algorithm.replace('+', 'p')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_results(
    results: dict[str, list[list[dict]]], out_dir: Path, baselines: dict[str, str]
) -> str:
    """results.md (one table per algorithm, against its uniform arm) and the plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for algorithm, baseline in baselines.items():
        arms = {k: v for k, v in results.items() if k.split("/")[0] == algorithm}
        sections.append(f"## {algorithm}\n\n{markdown_table(summarise(arms, baseline))}\n")
    images = plot(results, out_dir)
    text = "\n".join(sections + [f"![{p.stem}]({p.name})" for p in images]) + "\n"
    atomic_write_text(out_dir / "results.md", text)
    return text
