"""Compare allocation strategies against uniform allocation, over seeds (``gvm-raft compare``).

Every arm trains from the same base model on the same train/test split with the same seeds,
the same stage-2 budget N per iteration, the same number of iterations and (except the
``gvm-steps-xn`` confound) the same optimizer steps per iteration; arms differ only in their
config overrides. Runs resume, so a killed benchmark continues where it stopped.

Arms are paired: seed s of every arm starts from the same model, draws the same prompts in the
same order and is evaluated with the same evaluation seed; they differ in their overrides
(the A/A arm ``uniform-aa`` differs from uniform only in its sampling seeds, so its figures
show how large a difference chance alone produces: the smallest effect the harness resolves).

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

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gvm_raft.config import BOOKKEEPING_SETTINGS, GVMConfig, differing_settings, load_config
from gvm_raft.errors import UserError
from gvm_raft.fileio import atomic_write_text
from gvm_raft.report import accuracy_panels, curves, pyplot
from gvm_raft.rundir import (
    comparison_run_dir,
    comparison_runs,
    has_config,
    read_allocations,
    read_config,
    read_metrics,
)
from gvm_raft.trainer import train

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
    "uniform-aa": {"allocation": "uniform", "sampling_seed_offset": 1_000},
    "gvm": {"allocation": "gvm"},
    "gvm-matched": {"allocation": "gvm-matched"},
    "knapsack": {"allocation": "knapsack"},
    "dapo": {"allocation": "uniform", "dynamic_filtering": True},
}


def ablations(num_generations: int, mini_batch_size: int) -> dict[str, dict[str, Any]]:
    """GVM variants: G_i = 1, G_i of the per-token mean log-likelihood, alpha = 0, a Beta(1, 1)
    prior on p_i (a prompt with 0 of k accepted still gets samples), a smaller stage 1, online
    statistics, the reference fork's confound (num_generations times more optimizer steps) and
    its control (uniform with as many steps), uniform and GVM with the 1/(n_i p_i)-weighted
    M-step (the estimator whose variance GVM minimises), GVM with the weights that keep
    uniform's objective, and the matched strategy on online statistics."""
    fewer = max(1, mini_batch_size // num_generations)
    return {
        "gvm-G=1": {"allocation": "gvm", "gvm_use_grad_norms": False},
        "gvm-G=mean": {"allocation": "gvm", "grad_norm_reduction": "mean"},
        "gvm-alpha=0": {"allocation": "gvm", "gvm_alpha": 0.0},
        "gvm-prior": {"allocation": "gvm", "accept_rate_prior": "[1, 1]"},
        "gvm-k=2": {"allocation": "gvm", "stage1_samples": 2},
        "gvm-online": {"allocation": "gvm", "online_stats": True, "stage1_samples": 0},
        f"gvm-steps-x{num_generations}": {"allocation": "gvm", "mini_batch_size": fewer},
        f"uniform-steps-x{num_generations}": {"allocation": "uniform", "mini_batch_size": fewer},
        "uniform-weighted": {"allocation": "uniform", "sample_weighting": "inverse_acceptance"},
        "gvm-weighted": {"allocation": "gvm", "sample_weighting": "inverse_acceptance"},
        "gvm-reweighted": {"allocation": "gvm", "sample_weighting": "uniform_target"},
        "matched-online": {
            "allocation": "gvm-matched",
            "online_stats": True,
            "stage1_samples": 0,
        },
    }


def make_arms(
    algorithms: Sequence[str],
    strategies: Sequence[str],
    ablation_names: Sequence[str],
    num_generations: int,
    mini_batch_size: int,
    ablation_algorithms: Sequence[str] | None = None,
) -> list[Arm]:
    """Every strategy for every algorithm; the ablations for ``ablation_algorithms`` (None: the
    first algorithm only), each algorithm's right after its strategies (so a benchmark cut
    short has the first algorithm complete)."""
    variants = ablations(num_generations, mini_batch_size)
    unknown = [s for s in strategies if s not in STRATEGIES] + [
        a for a in ablation_names if a not in variants
    ]
    if unknown:
        known = ", ".join([*STRATEGIES, *variants])
        raise UserError(f"unknown arms {', '.join(unknown)} (known: {known})")
    with_ablations = algorithms[:1] if ablation_algorithms is None else ablation_algorithms
    arms = []
    for algorithm in algorithms:
        arms += [Arm(s, algorithm, STRATEGIES[s]) for s in strategies]
        if algorithm in with_ablations:
            arms += [Arm(name, algorithm, variants[name]) for name in ablation_names]
    return arms


def run_arms(
    arms: Iterable[Arm],
    seeds: Sequence[int],
    base_config: str | Path,
    out_dir: Path,
    overrides: Sequence[str] = (),
    progress: bool = True,
    train_missing: bool = True,
    arm_seeds: dict[str, Sequence[int]] | None = None,
    reuse_from: Sequence[Path] = (),
) -> dict[str, list[list[dict]]]:
    """Train (or resume, or just read) every arm for every seed; metric rows per arm and seed.

    Seed by seed (every arm for seed 0, then for seed 1, ...), so a comparison cut short has
    every arm paired. arm_seeds[name] restricts the arm of that name to some of the seeds.
    With train_missing False nothing is trained: only finished runs are read, and arms without
    any are left out (a report on a comparison still running). A run missing from out_dir whose
    twin (same arm and seed, same settings but where it is written) has finished in another
    comparison directory of reuse_from is linked, not trained again.
    """
    arms = list(arms)
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds {list(seeds)} repeat a seed: each seed is one paired replicate")
    owned = sorted({item.partition("=")[0].strip() for item in overrides} & COMPARE_SETTINGS)
    if owned:
        raise UserError(
            f"{', '.join(owned)} cannot be overridden in a comparison: it sets them for every "
            "arm and seed itself (--seeds, --out); drop the override"
        )
    found: dict[str, dict[int, list[dict]]] = {arm.label: {} for arm in arms}
    for seed in seeds:
        for arm in arms:
            if arm_seeds is not None and seed not in arm_seeds.get(arm.name, seeds):
                continue
            rows = _train_or_read(
                arm, seed, base_config, out_dir, overrides, progress, train_missing, reuse_from
            )
            if rows is not None:
                found[arm.label][seed] = rows
    return {label: [runs[s] for s in seeds if s in runs] for label, runs in found.items() if runs}


# What the harness sets for every run itself, over what the config file says: a file's own seed
# or output_dir (the paper configs set one) would otherwise make every seed the same run.
COMPARE_SETTINGS = frozenset({"seed", "output_dir", "resume"})


def _train_or_read(
    arm: Arm,
    seed: int,
    base_config: str | Path,
    out_dir: Path,
    overrides: Sequence[str],
    progress: bool,
    train_missing: bool,
    reuse_from: Sequence[Path],
) -> list[dict] | None:
    """The finished run's metric rows of one arm and seed (linked to its finished twin in
    reuse_from, or else trained, when missing)."""
    run_dir = _run_dir(out_dir, arm, seed)
    arm_overrides = [f"{k}={v}" for k, v in arm.overrides.items()]
    own = [f"algorithm={arm.algorithm}", f"output_dir={run_dir}", f"seed={seed}", "resume=true"]
    config = load_config(base_config, [*overrides, *arm_overrides, *own])
    if config.eval_every != 1:
        raise UserError("eval_every must be 1: the speed-ups compare accuracy at every iteration")
    if not run_dir.exists():
        twin = _finished_twin(config, arm, seed, reuse_from)
        if twin is not None:
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            run_dir.symlink_to(os.path.relpath(twin, run_dir.parent), target_is_directory=True)
    if not train_missing and has_config(run_dir):
        changed = differing_settings(read_config(run_dir), config, BOOKKEEPING_SETTINGS)
        if changed:
            print(
                f"warning: {run_dir} was trained with other settings ({', '.join(changed)}): "
                "left out of the report",
                file=sys.stderr,
            )
            return None
    rows = read_metrics(run_dir)
    if len(rows) <= config.iterations and train_missing:
        if progress:
            print(f"== {arm.label} seed {seed} -> {run_dir}", flush=True)
        train(config, progress=progress)
        rows = read_metrics(run_dir)
    return rows if len(rows) == config.iterations + 1 else None


def _run_dir(out_dir: Path, arm: Arm, seed: int) -> Path:
    return comparison_run_dir(out_dir, arm.algorithm, arm.name, seed)


def _finished_twin(
    config: GVMConfig, arm: Arm, seed: int, comparisons: Sequence[Path]
) -> Path | None:
    """The first finished run of this arm and seed in one of the comparison directories that
    was trained with the same settings as config (up to where it is written and what it logs)."""
    for comparison in comparisons:
        candidate = _run_dir(comparison, arm, seed).resolve()
        if len(read_metrics(candidate)) != config.iterations + 1:
            continue
        saved = read_config(candidate)
        if not differing_settings(saved, config, BOOKKEEPING_SETTINGS):
            return candidate
    return None


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


def _spread(values: np.ndarray) -> str:
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def _interval(interval: tuple[float, float] | None, digits: int = 2) -> str:
    return "" if interval is None else f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _speedup_text(
    mean: float | None, interval: tuple[float, float] | None, per_seed: list[float | None]
) -> str:
    if mean is None:
        return "-"
    head = "not reached" if mean == 0 else f"{mean:.2f}x"
    reached = sum(1 for s in per_seed if s)
    return head + _interval(interval) + f" ({reached}/{len(per_seed)} seeds reach)"


def _speedup_cells(row: dict[str, Any]) -> list[str]:
    """Step- then compute-matched speed-ups to uniform's best and to halfway."""
    return [
        _speedup_text(
            row[f"speedup_{kind}_{name}"],
            row[f"speedup_{kind}_{name}_interval"],
            row[f"speedup_{kind}_{name}_seeds"],
        )
        for kind in ("steps", "tokens")
        for name in ("best", "half")
    ]


def _paired_differences(differences: np.ndarray) -> str:
    return " ".join(f"{d:+.3f}" for d in differences)


def markdown_table(summary: list[dict[str, Any]]) -> str:
    targets = summary[0]["targets"]
    lines = [
        f"Targets: uniform's best mean accuracy {targets['best']:.3f}; halfway from the base "
        f"model {targets['half']:.3f}. Accuracies: mean ± standard deviation over seeds. "
        "Speed-ups: on the mean curves over seeds, with a 95% bootstrap interval over seeds "
        "(paired with uniform's), and how many seeds reach the target alone (against the "
        "uniform run of the same seed and its own targets); 0.00 in an interval is a resample "
        "whose arm never reaches the target. Mean accuracy over iterations 1..T: its paired "
        "difference from uniform, mean [95% bootstrap interval], and per seed. eval SE: the "
        "evaluation's own standard error per point (over test prompts), mean over points.",
        "",
        "| arm | final acc | best acc | mean acc over iterations | difference from uniform "
        "| per seed | speed-up (iterations) to best | to half | speed-up (tokens) to best "
        "| to half | steps/iter | accepted/iter | var/uniform | eval SE | tokens |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary[1:]:
        difference = row["auc_diff_seeds"]
        cells = [
            row["arm"],
            _spread(row["final"]),
            _spread(row["best"]),
            _spread(row["auc"]),
            f"{difference.mean():+.3f}" + _interval(row["auc_diff_interval"], 3),
            _paired_differences(difference),
            *_speedup_cells(row),
            f"{row['optimizer_steps']:.0f}",
            f"{row['accepted']:.0f}",
            f"{row['variance_ratio']:.2f}",
            f"{row['eval_se']:.3f}",
            f"{row['tokens'].mean():,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict[str, list[list[dict]]], out_dir: Path) -> list[Path]:
    """Accuracy against iteration and against generated tokens: mean and min-max band over
    seeds, one figure per algorithm."""
    plt = pyplot()
    written = []
    for algorithm in sorted({label.split("/")[0] for label in results}):
        arms = {k.split("/")[1]: v for k, v in results.items() if k.split("/")[0] == algorithm}
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        accuracy_panels(axes, arms)
        fig.suptitle(f"{algorithm}: mean and range over seeds")
        fig.tight_layout()
        path = out_dir / f"convergence_{algorithm.replace('+', 'p')}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


ACCEPT_RATE_BINS = ("0", "(0, 1/3]", "(1/3, 2/3]", "(2/3, 1)", "1")


def accept_rate_bin(accept_rate: float) -> str:
    """The bin of ``ACCEPT_RATE_BINS`` holding an estimated acceptance rate."""
    if accept_rate <= 0.0:
        return ACCEPT_RATE_BINS[0]
    if accept_rate >= 1.0:
        return ACCEPT_RATE_BINS[4]
    return ACCEPT_RATE_BINS[1 + min(int(accept_rate * 3 - 1e-9), 2)]


def budget_by_accept_rate(run_dirs: dict[str, list[Path]]) -> str:
    """Where each arm's samples went: per bin of the estimated acceptance rate p_i (the one the
    allocation used), the share of all samples drawn / the share of prompts, over every
    iteration and seed (allocations.jsonl). Uniform allocation gives equal shares."""
    lines = [
        "| arm | " + " | ".join(f"p_i {b}" for b in ACCEPT_RATE_BINS) + " |",
        "|---|" + "---|" * len(ACCEPT_RATE_BINS),
    ]
    for label, dirs in run_dirs.items():
        prompts = dict.fromkeys(ACCEPT_RATE_BINS, 0)
        samples = dict.fromkeys(ACCEPT_RATE_BINS, 0)
        for row in (r for run_dir in dirs for r in read_allocations(run_dir)):
            for accept_rate, n in zip(row["accept_rate"], row["n_samples"], strict=True):
                prompts[accept_rate_bin(accept_rate)] += 1
                samples[accept_rate_bin(accept_rate)] += n
        if not sum(prompts.values()):
            continue
        cells = [
            f"{samples[b] / sum(samples.values()):.2f} / {prompts[b] / sum(prompts.values()):.2f}"
            for b in ACCEPT_RATE_BINS
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(
    results: dict[str, list[list[dict]]], out_dir: Path, baselines: dict[str, str]
) -> str:
    """results.md (per algorithm: the table against its uniform arm, and where each arm's
    samples went by estimated acceptance rate) and the plots. Refused, leaving any earlier
    results.md as it was, when no algorithm has a finished uniform run to compare with."""
    if not baselines:
        raise UserError(
            f"no finished uniform run in {out_dir} matches these settings: nothing to report "
            "(results.md left as it was); train the comparison first, or pass the settings it "
            "was run with"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for algorithm, baseline in baselines.items():
        arms = {k: v for k, v in results.items() if k.split("/")[0] == algorithm}
        run_dirs = {label: comparison_runs(out_dir, label) for label in arms}
        sections.append(
            f"## {algorithm}\n\n{markdown_table(summarise(arms, baseline))}\n\n"
            "Samples drawn / prompts, by the estimated acceptance rate p_i the allocation used "
            f"(shares over all iterations and seeds):\n\n{budget_by_accept_rate(run_dirs)}\n"
        )
    images = plot(results, out_dir)
    text = "\n".join(sections + [f"![{p.stem}]({p.name})" for p in images]) + "\n"
    atomic_write_text(out_dir / "results.md", text)
    return text


def write_sweep(
    sweeps: dict[str, dict[str, list[list[dict]]]], key: str, out_dir: Path, arm: str = "gvm"
) -> str:
    """When does ``arm`` help? For each value of the swept setting (``sweeps[value]`` holds the
    results of that setting's arms): its paired difference in mean accuracy over iterations
    from uniform (mean [bootstrap interval] and per seed), its step- and compute-matched
    speed-ups, accepted samples per iteration (arm / uniform) and its estimated gradient
    variance against uniform's: sweep.md (sweep-<arm>.md for an arm other than gvm), and
    sweep_<key>.png (sweep_<key>_<arm>.png) plotting the difference and the compute-matched
    speed-up to halfway against the setting."""
    suffix = "" if arm == "gvm" else f"_{arm}"
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"| {key} | algorithm | mean acc difference {arm} - uniform | per seed | speed-up "
        "(iterations) to best | to half | speed-up (tokens) to best | to half | accepted/iter "
        f"{arm} / uniform | var/uniform |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    points: dict[str, list[dict[str, Any]]] = {}
    for value, results in sweeps.items():
        algorithms = sorted({label.split("/")[0] for label in results})
        for algorithm in algorithms:
            label, baseline = f"{algorithm}/{arm}", f"{algorithm}/uniform"
            if label not in results or baseline not in results:
                continue
            arms = {k: v for k, v in results.items() if k in (label, baseline)}
            summary = summarise(arms, baseline)
            row = next(r for r in summary[1:] if r["arm"] == label)
            uniform = next(r for r in summary[1:] if r["arm"] == baseline)
            difference = row["auc_diff_seeds"]
            cells = [
                value,
                algorithm,
                f"{difference.mean():+.3f}" + _interval(row["auc_diff_interval"], 3),
                _paired_differences(difference),
                *_speedup_cells(row),
                f"{row['accepted']:.0f} / {uniform['accepted']:.0f}",
                f"{row['variance_ratio']:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
            points.setdefault(algorithm, []).append({"x": float(value), **row})
    image = _plot_sweep(points, key, arm, out_dir / f"sweep_{key}{suffix}.png")
    text = "\n".join(lines) + f"\n\n![{image.stem}]({image.name})\n"
    atomic_write_text(out_dir / ("sweep.md" if arm == "gvm" else f"sweep-{arm}.md"), text)
    return text


def _plot_sweep(points: dict[str, list[dict[str, Any]]], key: str, arm: str, image: Path) -> Path:
    """Two panels against the swept setting: the mean-accuracy difference from uniform and the
    compute-matched speed-up to halfway, each with its 95% interval (a speed-up whose arm never
    reaches the target is left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("auc_diff", f"mean accuracy over iterations, {arm} - uniform", 0.0),
        ("speedup_tokens_half", "speed-up to halfway, generated tokens", 1.0),
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (field_name, y_label, neutral) in zip(axes, panels, strict=True):
        for algorithm, rows in points.items():
            xs, ys, low, high = [], [], [], []
            for row in rows:
                if field_name == "auc_diff":
                    y, interval = float(row["auc_diff_seeds"].mean()), row["auc_diff_interval"]
                else:
                    y, interval = row[field_name], row[f"{field_name}_interval"]
                if field_name != "auc_diff" and not y:
                    continue
                xs.append(row["x"])
                ys.append(y)
                low.append(y - interval[0] if interval else 0.0)
                high.append(interval[1] - y if interval else 0.0)
            ax.errorbar(xs, ys, yerr=[low, high], marker="o", capsize=4, label=algorithm)
        ax.axhline(neutral, color="grey", lw=1)
        ax.set_xlabel(key)
        ax.set_ylabel(y_label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(image, dpi=120)
    plt.close(fig)
    return image


def compare(
    config_file: str,
    overrides: Sequence[str],
    arm_names: Sequence[str],
    algorithms: Sequence[str] | None,
    seeds: Sequence[int],
    out_dir: str | Path,
    progress: bool = True,
    train_missing: bool = True,
) -> str:
    """``gvm-raft compare``: every arm (strategies and ablations by name; uniform among them)
    for every algorithm (default: the config's) and seed, then results.md; returns its text."""
    if "uniform" not in arm_names:
        raise UserError("--arms must include uniform: every comparison is against it")
    config = load_config(config_file, overrides)
    algorithms = list(algorithms or [config.algorithm])
    arms = make_arms(
        algorithms,
        [a for a in arm_names if a in STRATEGIES],
        [a for a in arm_names if a not in STRATEGIES],
        config.num_generations,
        config.mini_batch_size,
    )
    out = Path(out_dir)
    results = run_arms(
        arms, seeds, config_file, out, overrides, progress=progress, train_missing=train_missing
    )
    baselines = {a: f"{a}/uniform" for a in algorithms if f"{a}/uniform" in results}
    return write_results(results, out, baselines)
