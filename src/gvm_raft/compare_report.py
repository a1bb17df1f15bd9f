"""The comparison's tables and plots: results.md (per algorithm, every arm against uniform),
where each arm's samples went, and the sweeps' sweep.md; from compare_stats.py's figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gvm_raft.compare_stats import by_group, summarise
from gvm_raft.errors import UserError
from gvm_raft.fileio import atomic_write_text
from gvm_raft.report import accuracy_panels, pyplot, save_figure
from gvm_raft.rundir import comparison_runs, read_allocations, recorded_settings


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
        written.append(save_figure(fig, out_dir / f"convergence_{algorithm.replace('+', 'p')}.png"))
    return written


ACCEPT_RATE_BINS = ("0", "(0, 1/3]", "(1/3, 2/3]", "(2/3, 1)", "1")
UNMEASURED = "unmeasured"


def accept_rate_bin(accept_rate: float) -> str:
    """The bin of ``ACCEPT_RATE_BINS`` holding an estimated acceptance rate."""
    if accept_rate <= 0.0:
        return ACCEPT_RATE_BINS[0]
    if accept_rate >= 1.0:
        return ACCEPT_RATE_BINS[4]
    return ACCEPT_RATE_BINS[1 + min(int(accept_rate * 3 - 1e-9), 2)]


def arm_allocations(run_dirs: dict[str, list[Path]]) -> dict[str, list[dict]]:
    """Each arm's allocations.jsonl rows, over all its runs (read once for every share table).
    In a run with online statistics a prompt's p_i and G_i come from its previous visit, so a
    prompt without one in the run's earlier rows had only a placeholder (the mean of the seen
    prompts', or 1): such rows get ``"measured"``, one flag per prompt."""
    return {
        label: [row for run_dir in dirs for row in _run_allocations(run_dir)]
        for label, dirs in run_dirs.items()
    }


def _run_allocations(run_dir: Path) -> list[dict]:
    rows = read_allocations(run_dir)
    if not recorded_settings(run_dir).get("online_stats"):
        return rows
    visited: set[int] = set()
    for row in rows:
        row["measured"] = [row_id in visited for row_id in row["row_id"]]
        visited.update(row["row_id"])
    return rows


def budget_by_accept_rate(allocations: dict[str, list[dict]]) -> str:
    """Where each arm's samples went (``arm_allocations``): per bin of the estimated acceptance
    rate p_i (the one the allocation used), the share of all samples drawn / the share of
    prompts, over every iteration and seed; prompts an online-statistics run had not measured
    yet get a column of their own, shown when there are any. Uniform allocation gives equal
    shares."""

    def bins(row: dict) -> list[str]:
        measured = row.get("measured", [True] * len(row["accept_rate"]))
        return [
            accept_rate_bin(p) if seen else UNMEASURED
            for p, seen in zip(row["accept_rate"], measured, strict=True)
        ]

    unmeasured = any(
        not all(row.get("measured", [True])) for rows in allocations.values() for row in rows
    )
    return _share_table(
        allocations, ACCEPT_RATE_BINS + ((UNMEASURED,) if unmeasured else ()), "p_i ", bins
    )


def budget_by_group(allocations: dict[str, list[dict]]) -> str:
    """Where each arm's samples went (``arm_allocations``) by training prompts' group
    (eval_group_column's "<column>=<value>"): the share of all samples drawn / the share of
    prompts, over every iteration and seed; empty when no arm logged groups."""
    groups = sorted(
        {
            group
            for rows in allocations.values()
            for row in rows
            for group in row.get("group", [])
            if group is not None
        }
    )
    if not groups:
        return ""
    return _share_table(allocations, tuple(groups), "", lambda row: row.get("group", []))


def _share_table(
    allocations: dict[str, list[dict]],
    columns: tuple[str, ...],
    prefix: str,
    bins_of: Callable[[dict], list[str | None]],
) -> str:
    """Per arm and column, samples drawn / prompts as shares of the arm's totals over the
    prompts ``bins_of`` puts in some column; arms without any are left out."""
    lines = [
        "| arm | " + " | ".join(f"{prefix}{c}" for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for label, rows in allocations.items():
        prompts = dict.fromkeys(columns, 0)
        samples = dict.fromkeys(columns, 0)
        for row in rows:
            bins = bins_of(row)
            if not bins:  # a run that did not log this
                continue
            for column, n in zip(bins, row["n_samples"], strict=True):
                if column in prompts:
                    prompts[column] += 1
                    samples[column] += n
        if not sum(prompts.values()):
            continue
        cells = [
            f"{samples[c] / sum(samples.values()):.2f} / {prompts[c] / sum(prompts.values()):.2f}"
            for c in columns
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def group_table(results: dict[str, list[list[dict]]], baseline: str) -> str:
    """Mean accuracy over iterations by test-set group (``by_group``): the baseline's, then
    each arm's paired difference, mean [95% interval] and per seed; empty without groups."""
    groups = by_group(results, baseline)
    if not groups:
        return ""
    arms = [label for label in results if label != baseline]
    lines = [
        "| group | " + " | ".join([baseline, *(f"{a} - uniform" for a in arms)]) + " |",
        "|---|---|" + "---|" * len(arms),
    ]
    for group, row in groups.items():
        cells = [group, f"{row['baseline']:.3f}"]
        for label in arms:
            if row[label] is None:
                cells.append("not logged")
                continue
            diff, interval = row[label]
            paired = _paired_differences(diff)
            cells.append(f"{diff.mean():+.3f}{_interval(interval, 3)} ({paired})")
        lines.append("| " + " | ".join(cells) + " |")
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
        allocations = arm_allocations({label: comparison_runs(out_dir, label) for label in arms})
        groups = group_table(arms, baseline)
        shares = budget_by_group(allocations)
        sections.append(
            f"## {algorithm}\n\n{markdown_table(summarise(arms, baseline))}\n\n"
            "Samples drawn / prompts, by the estimated acceptance rate p_i the allocation used "
            f"(shares over all iterations and seeds):\n\n{budget_by_accept_rate(allocations)}\n"
            + (
                "\nSamples drawn / prompts, by the training prompts' group (eval_group_column; "
                f"shares over all iterations and seeds):\n\n{shares}\n"
                if shares
                else ""
            )
            + (
                f"\nMean accuracy over iterations by test-set group (eval_group_column): "
                f"uniform's, and each arm's paired difference from it:\n\n{groups}\n"
                if groups
                else ""
            )
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
    plt = pyplot()

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
    return save_figure(fig, image)
