"""What an allocation does, in words: the ``gvm-raft allocate`` report (its spread and each
gradient variance against uniform allocation's) and, the other way round, the allocate command
that gives a training run's allocation from its statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from gvm_raft import allocation, estimators
from gvm_raft.config import GVMConfig
from gvm_raft.errors import UserError
from gvm_raft.fileio import atomic_write_text, check_output_file
from gvm_raft.rundir import ALLOCATIONS_FILE, has_config, read_allocations, read_config
from gvm_raft.stats import PromptStats, read_prompt_stats, write_prompt_stats


def allocate_file(
    stats_file: str, budget: int, strategy: str, out: str | None, **options: Any
) -> tuple[str, str, str | None]:
    """``gvm-raft allocate``: the allocation of ``budget`` samples over a statistics file's
    prompts (``options``: allocate()'s keywords), as a JSON list (written to ``out`` when
    given), its report, and why it fell back to uniform (None when it did not)."""
    if out:
        check_output_file(out)
    stats = read_prompt_stats(stats_file)
    try:
        result = allocation.allocate(
            stats.grad_norms, stats.accept_rates, budget, strategy, **options
        )
    except ValueError as err:  # the options' values: allocate checks them all up front
        raise UserError(str(err)) from None
    sizes = result.n_samples
    alpha, beta = options["alpha"], options["beta"]
    summary = allocation.allocation_summary(
        sizes, stats.grad_norms, stats.accept_rates, alpha, beta
    ) | matched_variance_summary(strategy, sizes, stats, options.get("reference_size"))
    text = json.dumps(sizes.tolist())
    if out:
        atomic_write_text(out, text + "\n")
    report = format_allocation_summary(summary, len(sizes), strategy, alpha, beta, out)
    return text, report, result.fallback


def matched_variance_summary(
    strategy: str, sizes: np.ndarray, stats: PromptStats, reference_size: int | None
) -> dict[str, Any]:
    """For gvm-accuracy and gvm-grpo, the variance of the estimator each minimises, at these
    sizes and at uniform's (estimators.py)."""
    if strategy not in ("gvm-accuracy", "gvm-grpo"):
        return {}
    uniform = allocation.allocate(
        stats.grad_norms, stats.accept_rates, int(sizes.sum()), "uniform"
    ).n_samples
    if strategy == "gvm-accuracy":
        name = "sum p G^2/n"

        def variance(n: np.ndarray) -> float:
            return estimators.accuracy_variance(n, stats.grad_norms, stats.accept_rates)
    else:
        size = reference_size or max(2, round(int(sizes.sum()) / max(len(sizes), 1)))
        name = f"GRPO's, nbar={size}"

        def variance(n: np.ndarray) -> float:
            return estimators.grpo_variance(n, stats.grad_norms, stats.accept_rates, size)

    return {"matched_name": name, "matched": variance(sizes), "matched_uniform": variance(uniform)}


def format_allocation_summary(
    summary: dict[str, Any], prompts: int, strategy: str, alpha: float, beta: float, out: str | None
) -> str:
    """The allocate command's report: totals, spread, and each variance against uniform's."""
    lines = [
        f"strategy {strategy}: {summary['total']} samples over {prompts} prompts"
        + (f" -> {out}" if out else ""),
        f"  per prompt: min {summary['min']}, median {summary['median']:g}, "
        f"max {summary['max']}; {summary['zero_prompts']} prompts get 0 "
        f"({summary['dropped_prompts']} of them with G > 0 and p > 0); "
        f"Gini {summary['gini']:.3f}",
        "  gradient variance sum G^2/(n p): "
        + variance_against_uniform(summary["variance"], summary["variance_uniform"]),
        f"  regularised (alpha={alpha:g}, beta={beta:g}): "
        + variance_against_uniform(
            summary["regularised_variance"], summary["regularised_variance_uniform"]
        ),
    ]
    if "matched" in summary:
        lines.append(
            f"  variance of the estimator it minimises ({summary['matched_name']}): "
            + variance_against_uniform(summary["matched"], summary["matched_uniform"])
        )
    return "\n".join(lines)


def variance_against_uniform(variance: float, uniform: float) -> str:
    """'V (uniform U, ratio R)', saying in words when a prompt with a gradient term got no
    sample (V infinite) or no prompt has one (V = 0)."""

    def shown(value: float) -> str:
        return (
            "infinite: a prompt with G > 0 and p > 0 got no sample"
            if value == np.inf
            else (f"{value:.6g}")
        )

    if variance == 0 and uniform == 0:
        return "0 (no prompt has both G > 0 and p > 0)"
    ratio = f", ratio {variance / uniform:.4f}" if np.isfinite(variance) and uniform > 0 else ""
    return f"{shown(variance)} (uniform {shown(uniform)}{ratio})"


def allocate_command(config: GVMConfig, stats_file: str) -> str:
    """The ``gvm-raft allocate`` command that gives a run's allocation from its statistics:
    its budget, strategy, bounds (at least k per prompt when stage 1 is reused) and filters."""
    floor = max(config.min_generations, config.stage1_samples if config.reuse_stage1 else 0)
    parts = [
        f"gvm-raft allocate {stats_file} --budget {config.budget}",
        f"--strategy {config.strategy} --min {floor}",
        f"--alpha {config.gvm_alpha:g} --beta {config.gvm_beta:g}",
    ]
    if config.max_generations is not None:
        parts.append(f"--max {config.max_generations}")
    if config.max_accept_rate < 1:
        parts.append(f"--max-accept-rate {config.max_accept_rate:g}")
    if config.min_expected_accepted > 0:
        parts.append(f"--min-expected-accepted {config.min_expected_accepted:g}")
    if config.strategy == "gvm-grpo":
        parts.append(f"--reference-size {config.num_generations}")
    command = " ".join(parts)
    if not config.gvm_use_grad_norms:
        command += " (with every grad_norm set to 1: the run had gvm_use_grad_norms=false)"
    return command


def export_run_stats(run_dir: str | Path, iteration: int | None, out: str) -> str:
    """``gvm-raft stats``: one iteration's per-prompt statistics of a run (default: its last)
    written in the allocate format to ``out``; returns what was written and, when the run's
    config is there, the allocate command that gives its n_i again."""
    check_output_file(out)
    run = Path(run_dir)
    rows = read_allocations(run)
    if not rows:
        raise UserError(f"{run} has no {ALLOCATIONS_FILE}: pass a run directory")
    chosen = [r for r in rows if iteration in (None, r["iteration"])]
    if not chosen:
        done = ", ".join(str(r["iteration"]) for r in rows)
        raise UserError(f"--iteration {iteration} is not in the run (iterations: {done})")
    row = chosen[-1]
    stats = PromptStats(np.array(row["grad_norm"]), np.array(row["accept_rate"]))
    write_prompt_stats(out, stats, row["row_id"])
    lines = [f"iteration {row['iteration']}: {len(row['grad_norm'])} prompts -> {out}"]
    if has_config(run):
        lines.append("the run's n_i again: " + allocate_command(read_config(run), out))
    return "\n".join(lines)
