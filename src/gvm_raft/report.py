"""Tables and plots from run directories (metrics.jsonl, allocations.jsonl, completions.jsonl,
config.yaml).

Plots (PNG): test accuracy against iteration and against generated tokens (stage 1 + 2), runs
overlaid; sample allocation against acceptance rate over each run's iterations. Examples of
completions from each run's first, middle and last logged iteration.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gvm_raft.errors import UserError
from gvm_raft.fileio import atomic_write_bytes, atomic_write_text
from gvm_raft.rundir import read_allocations, read_completions, read_metrics, recorded_settings


def run_label(run_dir: Path) -> str:
    """ "name (allocation-ALGORITHM)"; a comparison's seed-s directory is named with its arm."""
    config = recorded_settings(run_dir)
    algorithm = config.get("algorithm", "?").upper()
    allocation = config.get("allocation", "?")
    name = run_dir.name
    if name.startswith("seed-"):
        name = f"{run_dir.parent.name} {name}"
    return f"{name} ({allocation}-{algorithm})"


def summary_table(run_dirs: list[Path]) -> str:
    header = (
        "| run | iterations | base acc | final acc | best acc | final greedy | samples | tokens "
        "| minutes |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for run_dir in run_dirs:
        rows = read_metrics(run_dir)
        if not rows:
            raise UserError(f"{run_dir} has no metrics.jsonl rows: is it a run directory?")
        accuracy = [r["test/accuracy"] for r in rows if "test/accuracy" in r]
        final = rows[-1]
        minutes = sum(r.get("time/iteration", 0.0) for r in rows) / 60

        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        base, last, best = (accuracy[0], accuracy[-1], max(accuracy)) if accuracy else (None,) * 3
        samples, tokens = final.get("samples/cumulative", 0), final.get("tokens/cumulative", 0)
        lines.append(
            f"| {run_label(run_dir)} | {final['iteration']} | {fmt(base)} | {fmt(last)} "
            f"| {fmt(best)} | {fmt(final.get('test/accuracy_greedy'))} | {int(samples)} "
            f"| {int(tokens)} | {minutes:.1f} |"
        )
    return "\n".join(lines)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (PNG files, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Write fig as a PNG at path atomically (a full disk leaves the previous plot whole), then
    close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def style_accuracy_axes(ax: Any, x_label: str) -> None:
    """The accuracy plots' axes: labels, a grid, accuracy from 0, whole iterations on an
    iteration axis."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel(x_label)
    ax.set_ylabel("test accuracy (mean over samples)")
    ax.set_ylim(bottom=0.0)
    if x_label == "iteration":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


ACCURACY = "test/accuracy"
# The x axes of accuracy curves: metric key and axis label.
CURVE_AXES = (("iteration", "iteration"), ("tokens/cumulative", "generated tokens (stage 1 + 2)"))


def curves(
    runs: list[list[dict]], x_key: str, y_key: str = ACCURACY
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) arrays of shape (runs, evaluations), y the test accuracy (or another metric every
    evaluation logs, e.g. a group's accuracy), from the evaluated metric rows of each run (rows
    without a test accuracy left out), cut to the shortest run."""
    evaluated = [[r for r in rows if ACCURACY in r] for rows in runs]
    length = min(len(rows) for rows in evaluated)
    xs = np.array([[r.get(x_key, 0.0) for r in rows[:length]] for rows in evaluated], dtype=float)
    ys = np.array([[r[y_key] for r in rows[:length]] for rows in evaluated], dtype=float)
    return xs, ys


def accuracy_panels(axes: Sequence[Any], results: dict[str, list[list[dict]]]) -> None:
    """Test accuracy against iteration (axes[0]) and generated tokens (axes[1]): per label of
    ``results`` (label -> the metric rows of each of its runs) the mean curve over its runs and,
    for several runs, their min-max band."""
    for label, runs in results.items():
        for ax, (x_key, _) in zip(axes, CURVE_AXES, strict=True):
            xs, ys = curves(runs, x_key)
            x = xs.mean(0)
            (line,) = ax.plot(x, ys.mean(0), label=label, lw=1.5, marker="o", ms=3)
            if len(runs) > 1:
                ax.fill_between(x, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.12)
    for ax, (_, x_label) in zip(axes, CURVE_AXES, strict=True):
        style_accuracy_axes(ax, x_label)
    axes[0].legend(fontsize=8)


def allocation_panel(
    ax: Any, run_dir: Path, rows: list[dict], uniform_size: int | None = None
) -> None:
    """Samples n_i against the estimated acceptance rate p_i over every iteration of a run
    (``rows``: its allocations.jsonl), coloured by the gradient norm G_i, with uniform's n per
    prompt as a line."""
    accept = [p for row in rows for p in row["accept_rate"]]
    sizes = [n for row in rows for n in row["n_samples"]]
    norms = [g for row in rows for g in row["grad_norm"]]
    points = ax.scatter(accept, sizes, c=norms, cmap="viridis", s=10, alpha=0.6)
    ax.figure.colorbar(points, ax=ax, label="gradient norm G_i")
    if uniform_size is not None:
        ax.axhline(uniform_size, color="grey", ls="--", lw=1, label=f"uniform: {uniform_size}")
        ax.legend(fontsize=8)
    ax.set_xlabel("acceptance rate p_i (stage 1)")
    ax.set_ylabel("samples n_i")
    ax.set_title(f"where {run_label(run_dir)} put its samples", fontsize=9)
    ax.grid(alpha=0.3)


def plot_accuracy(run_dirs: list[Path], out: Path) -> Path:
    """accuracy.png: the runs' accuracy curves overlaid, against iteration and tokens."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    accuracy_panels(axes, {run_label(d): [read_metrics(d)] for d in run_dirs})
    fig.tight_layout()
    return save_figure(fig, out / "accuracy.png")


def plot_allocation(run_dirs: list[Path], out: Path) -> Path | None:
    """allocation_vs_accept_rate.png: one allocation panel per run that logged allocations."""
    plt = pyplot()
    logged = [(d, rows) for d in run_dirs if (rows := read_allocations(d))]
    if not logged:
        return None
    fig, axes = plt.subplots(1, len(logged), figsize=(5 * len(logged), 4), squeeze=False)
    for ax, (run_dir, rows) in zip(axes[0], logged, strict=True):
        allocation_panel(ax, run_dir, rows)
    fig.tight_layout()
    return save_figure(fig, out / "allocation_vs_accept_rate.png")


def plot_comparison(
    results: dict[str, list[list[dict]]], allocated: Path, uniform_size: int, path: Path
) -> Path:
    """One PNG: the arms' accuracy against iteration and against generated tokens, and where
    the run ``allocated`` put its samples."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    accuracy_panels(axes[:2], results)
    allocation_panel(axes[2], allocated, read_allocations(allocated), uniform_size)
    fig.tight_layout()
    return save_figure(fig, path)


def completion_examples(run_dir: Path, per_iteration: int = 3) -> str:
    """Markdown: a few logged completions of the run's first, middle and last logged iteration
    ("" when the run logged none)."""
    records = read_completions(run_dir)
    if not records:
        return ""
    logged = sorted({r["iteration"] for r in records})
    chosen = sorted({logged[0], logged[len(logged) // 2], logged[-1]})
    parts = [f"### Completions of {run_label(run_dir)}"]
    for iteration in chosen:
        examples = [r for r in records if r["iteration"] == iteration][:per_iteration]
        parts += ["", f"Iteration {iteration}:", "", completions_markdown(examples)]
    return "\n".join(parts)


COMPLETION_COLUMNS = ("prompt", "completion", "reward", "accepted", "n_samples", "accept_rate")


def completions_markdown(records: list[dict], width: int = 160) -> str:
    """A markdown table of completions, texts on one line and cut at ``width`` characters."""

    def cell(value: object) -> str:
        text = " ".join(str(value).split()).replace("|", "\\|")
        return text if len(text) <= width else text[: width - 3] + "..."

    lines = [
        "| " + " | ".join(COMPLETION_COLUMNS) + " |",
        "|" + "---|" * len(COMPLETION_COLUMNS),
    ]
    for record in records:
        values = [
            f"{record[c]:.3f}" if isinstance(record[c], float) else cell(record[c])
            for c in COMPLETION_COLUMNS
        ]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def write_report(run_dirs: list[Path], out_dir: Path) -> str:
    """Write report.md (summary, plots, completion examples) and the PNG plots into out_dir;
    returns the summary table."""
    table = summary_table(run_dirs)  # refuses a directory without metrics first
    out_dir.mkdir(parents=True, exist_ok=True)
    images = [plot_accuracy(run_dirs, out_dir)]
    allocation = plot_allocation(run_dirs, out_dir)
    if allocation is not None:
        images.append(allocation)
    examples = [text for text in map(completion_examples, run_dirs) if text]
    text = "\n".join([table, "", *[f"![{p.stem}]({p.name})" for p in images], "", *examples, ""])
    atomic_write_text(out_dir / "report.md", text)
    return f"{table}\n\nreport written to {out_dir / 'report.md'}"
