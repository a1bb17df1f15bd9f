"""``gvm-raft demo``: uniform allocation against GVM on the embedded world, paired, with a
two-row summary and one plot."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState

from gvm_raft.compare import ARM_STRATEGIES, Arm, run_arms
from gvm_raft.compare_stats import mean_over_iterations
from gvm_raft.config import load_config
from gvm_raft.errors import UserError
from gvm_raft.report import curves, plot_comparison
from gvm_raft.rundir import comparison_run_dir
from gvm_raft.tasks.demo_world import (
    format_world_report,
    open_world,
    shipped_world,
    world_overrides,
)


def bundled_config(name: str = "demo.yaml") -> Path:
    """A config of configs/, shipped inside the package as well for pip installs."""
    return Path(str(resources.files("gvm_raft") / "configs" / name))


def run_demo(
    world_dir: str | None, out_dir: str, overrides: list[str], progress: bool = True, seed: int = 0
) -> str:
    """Train uniform allocation and the config's GVM allocation (configs/demo.yaml: the
    default, ``gvm``) from the same base model on the same prompts and seed, each run resumed
    if it exists; write demo.png; return the summary.

    The world is the shipped one, or the one built (or reused) in ``world_dir``. Under several
    processes (accelerate launch / torchrun) the main process builds the world and writes the
    summary; the others wait for it.
    """
    state = PartialState(cpu=not torch.cuda.is_available())
    loud = progress and state.is_main_process
    world = shipped_world() if world_dir is None else Path(world_dir)  # report after the checks
    settings = [*world_overrides(world), *overrides]
    config = load_config(bundled_config(), settings)  # bad overrides fail before any build
    if config.allocation == "uniform":
        raise UserError(
            "allocation=uniform leaves the demo nothing to compare: it trains uniform allocation "
            "beside the allocation you set (e.g. allocation=gvm-matched); drop the override"
        )
    with state.main_process_first():
        world, report = open_world(world_dir, progress=loud)
    if loud and world_dir is not None:
        print(format_world_report(report, world), flush=True)
    arms = [
        Arm("uniform", config.algorithm, ARM_STRATEGIES["uniform"]),
        Arm(config.allocation, config.algorithm),
    ]
    out = Path(out_dir)
    results = run_arms(arms, [seed], bundled_config(), out, settings, progress=loud)
    labels = [arm.label for arm in arms]
    if len(results) != len(arms):
        raise UserError(f"a demo run in {out} did not finish: rerun the demo to resume it")
    if not state.is_main_process:
        return ""
    gvm_dir = comparison_run_dir(out, arms[1].algorithm, arms[1].name, seed)
    image = plot_comparison(results, gvm_dir, config.num_generations, out / "demo.png")
    return demo_summary(results, labels) + f"\n\nplot: {image}\nruns: {out / 'runs'}"


def demo_summary(results: dict[str, list[list[dict]]], labels: list[str]) -> str:
    """Per arm (one run each): base, final and mean accuracy over iterations 1..T, tokens
    generated and minutes; then the second arm minus the first."""
    columns = ("base acc", "final acc", "mean acc", "tokens", "minutes")
    figures = {}
    for label in labels:
        (rows,) = results[label]
        _, accuracy = curves([rows], "iteration")
        figures[label] = (
            accuracy[0, 0],
            accuracy[0, -1],
            float(mean_over_iterations(accuracy)[0]),
            rows[-1].get("tokens/cumulative", 0),
            sum(r.get("time/iteration", 0.0) for r in rows) / 60,
        )
    width = max(len(label) for label in [*labels, "difference"])
    lines = [f"{'arm':<{width}} " + " ".join(f"{c:>10}" for c in columns)]
    for label, values in figures.items():
        lines.append(f"{label:<{width}} " + _cells(values, signed=False))
    difference = np.subtract(figures[labels[1]], figures[labels[0]])
    lines.append(f"{'difference':<{width}} " + _cells(tuple(difference), signed=True))
    lines.append(
        f"(difference: {labels[1]} minus {labels[0]}; mean acc: over iterations 1..T, the area "
        "under the curve per iteration)"
    )
    return "\n".join(lines)


def _cells(values: tuple, signed: bool) -> str:
    sign = "+" if signed else ""
    base, final, mean, tokens, minutes = values
    return " ".join(
        [
            f"{base:>{sign}10.3f}",
            f"{final:>{sign}10.3f}",
            f"{mean:>{sign}10.3f}",
            f"{int(tokens):>{sign}10,}",
            f"{minutes:>{sign}10.1f}",
        ]
    )
