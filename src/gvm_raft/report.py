"""Tables and plots from run directories (metrics.jsonl, allocations.jsonl, completions.jsonl,
config.yaml).

Plots (PNG): test accuracy against iteration and against generated samples (stage 1 + 2), runs
overlaid; sample allocation against acceptance rate in each run's last iteration. Examples of
completions from each run's first, middle and last logged iteration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gvm_raft.checkpoint import COMPLETIONS_FILE, METRICS_FILE, read_allocations
from gvm_raft.errors import UserError
from gvm_raft.fileio import atomic_write_text, read_jsonl


def run_label(run_dir: Path) -> str:
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    algorithm = config.get("algorithm", "?").upper()
    allocation = config.get("allocation", "?")
    return f"{run_dir.name} ({allocation}-{algorithm})"


def summary_table(run_dirs: list[Path]) -> str:
    header = (
        "| run | iterations | base acc | final acc | best acc | final greedy | samples | tokens "
        "| minutes |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for run_dir in run_dirs:
        rows = read_jsonl(run_dir / METRICS_FILE)
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def plot_accuracy(run_dirs: list[Path], out: Path) -> list[Path]:
    plt = _pyplot()
    written = []
    for x_key, x_label, name in [
        ("iteration", "iteration", "accuracy_vs_iteration.png"),
        ("samples/cumulative", "generated samples (stage 1 + 2)", "accuracy_vs_samples.png"),
    ]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for run_dir in run_dirs:
            rows = [r for r in read_jsonl(run_dir / METRICS_FILE) if "test/accuracy" in r]
            xs = [r.get(x_key, 0) for r in rows]
            ax.plot(xs, [r["test/accuracy"] for r in rows], marker="o", label=run_label(run_dir))
        style_accuracy_axes(ax, x_label)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        written.append(out / name)
    return written


def plot_allocation(run_dirs: list[Path], out: Path) -> Path | None:
    plt = _pyplot()
    runs = [(d, read_allocations(d)) for d in run_dirs]
    runs = [(d, rows[-1]) for d, rows in runs if rows]
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, (run_dir, last) in zip(axes[0], runs, strict=True):
        points = ax.scatter(
            last["accept_rate"], last["n_samples"], c=last["grad_norm"], cmap="viridis", s=18
        )
        fig.colorbar(points, ax=ax, label="gradient norm G_i")
        ax.set_xlabel("acceptance rate p_i (stage 1)")
        ax.set_ylabel("samples n_i")
        ax.set_title(f"{run_label(run_dir)}, iteration {last['iteration']}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "allocation_vs_accept_rate.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def completion_examples(run_dir: Path, per_iteration: int = 3) -> str:
    """Markdown: a few logged completions of the run's first, middle and last logged iteration
    ("" when the run logged none)."""
    records = read_jsonl(run_dir / COMPLETIONS_FILE)
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
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summary_table(run_dirs)
    images = plot_accuracy(run_dirs, out_dir)
    allocation = plot_allocation(run_dirs, out_dir)
    if allocation is not None:
        images.append(allocation)
    examples = [text for text in map(completion_examples, run_dirs) if text]
    text = "\n".join([table, "", *[f"![{p.stem}]({p.name})" for p in images], "", *examples, ""])
    atomic_write_text(out_dir / "report.md", text)
    return f"{table}\n\nreport written to {out_dir / 'report.md'}"
