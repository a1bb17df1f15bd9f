"""The ``gvm-raft`` command line.

A user-facing error (``errors.UserError``: config, data, statistics file, model path, ...), an
unusable verifier and a file-system error print one line and exit with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from gvm_raft import allocation, estimators
from gvm_raft.errors import UserError, VerifierError
from gvm_raft.fileio import atomic_write_text, check_output_file
from gvm_raft.stats import PromptStats, read_prompt_stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        status = args.handler(args)
    except (UserError, VerifierError, OSError) as err:
        print(f"gvm-raft {args.command}: error: {err}", file=sys.stderr)
        return 2
    if _leave_process_group():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)  # see _leave_process_group
    return status


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as the CLI prints it: the message, not the source line that raised it."""
    return f"warning: {message}\n"


def _leave_process_group() -> bool:
    """Under torchrun / accelerate launch: free what still references collectives, wait for
    every process, then close the group, so no process exits while another still talks to it.
    True when it did: the caller then exits without interpreter finalization, during which
    Gloo's worker threads can abort a process whose work is done ("terminate called without an
    active exception", seen on CPU under FSDP2; pytorch/pytorch#179291)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return False
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gvm-raft",
        description="RAFT / RAFT++ / GRPO with gradient-variance-minimising sample allocation.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_allocate(commands)
    _add_prepare_demo(commands)
    _add_train(commands)
    _add_demo(commands)
    _add_eval(commands)
    _add_compare(commands)
    _add_report(commands)
    _add_stats(commands)
    return parser


def _add_allocate(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "allocate",
        help="split a sample budget across prompts from their statistics",
        description="Read per-prompt statistics (JSON lines: index, grad_norm, and accept_rate "
        "or accepted + sampled) and write the per-prompt sample sizes as a JSON list.",
    )
    cmd.add_argument("stats", help="statistics file (JSON lines)")
    cmd.add_argument("--budget", type=int, required=True, help="total samples N to allocate")
    cmd.add_argument(
        "--strategy",
        choices=allocation.STRATEGIES,
        default="gvm",
        help="gvm (the paper's rule, integer optimum), gvm-rounding (the RLHFlow "
        "implementation), gvm-accuracy (n_i ∝ G_i sqrt(p_i): RAFT / RAFT++ weighted to uniform's "
        "objective), gvm-grpo (GRPO weighted to uniform's objective), uniform (the baseline) or "
        "knapsack (Knapsack-RL); the training setting `allocation` takes the same names (and "
        "gvm-matched, which picks gvm-accuracy or gvm-grpo for the algorithm)",
    )
    cmd.add_argument(
        "--reference-size",
        type=int,
        default=None,
        help="gvm-grpo: the group size nbar whose objective it keeps (default: budget / prompts, "
        "the uniform group; training uses num_generations)",
    )
    cmd.add_argument(
        "--alpha",
        type=float,
        default=allocation.DEFAULT_ALPHA,
        help="regulariser weight in q = p + alpha / p^(beta-1)",
    )
    cmd.add_argument(
        "--beta",
        type=float,
        default=allocation.DEFAULT_BETA,
        help="regulariser exponent in q = p + alpha / p^(beta-1)",
    )
    cmd.add_argument(
        "--min",
        dest="min_samples",
        type=int,
        default=0,
        help="minimum samples per (unfiltered) prompt",
    )
    cmd.add_argument(
        "--max",
        dest="max_samples",
        type=int,
        default=None,
        help="maximum samples per prompt (default: no cap)",
    )
    cmd.add_argument(
        "--max-accept-rate",
        type=float,
        default=1.0,
        help="prompts with a higher acceptance rate get 0 (1.0 = off)",
    )
    cmd.add_argument(
        "--min-expected-accepted",
        type=float,
        default=0.0,
        help="prompts expected to yield fewer accepted samples get 0 (0 = off)",
    )
    cmd.add_argument("--out", help="write the sample sizes here (default: standard output)")
    cmd.set_defaults(handler=_run_allocate)


def _run_allocate(args: argparse.Namespace) -> int:
    if args.out:
        check_output_file(args.out)
    stats = read_prompt_stats(args.stats)
    try:
        result = allocation.allocate(
            stats.grad_norms,
            stats.accept_rates,
            args.budget,
            args.strategy,
            alpha=args.alpha,
            beta=args.beta,
            min_samples=args.min_samples,
            max_samples=args.max_samples,
            max_accept_rate=args.max_accept_rate,
            min_expected_accepted=args.min_expected_accepted,
            reference_size=args.reference_size,
        )
    except ValueError as err:  # the options' values: allocate checks them all up front
        raise UserError(str(err)) from None
    if result.fallback:
        print(f"warning: {result.fallback}; falling back to uniform", file=sys.stderr)
    sizes = result.n_samples
    text = json.dumps(sizes.tolist())
    summary = allocation.allocation_summary(
        sizes, stats.grad_norms, stats.accept_rates, args.alpha, args.beta
    ) | matched_variance_summary(args.strategy, sizes, stats, args.reference_size)
    report = sys.stdout
    if args.out:
        atomic_write_text(args.out, text + "\n")
    else:
        print(text)
        report = sys.stderr
    print(_format_allocation_summary(summary, len(sizes), args), file=report)
    return 0


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


def _format_allocation_summary(summary: dict[str, float], prompts: int, args) -> str:
    lines = [
        f"strategy {args.strategy}: {summary['total']} samples over {prompts} prompts"
        + (f" -> {args.out}" if args.out else ""),
        f"  per prompt: min {summary['min']}, median {summary['median']:g}, "
        f"max {summary['max']}; {summary['zero_prompts']} prompts get 0 "
        f"({summary['dropped_prompts']} of them with G > 0 and p > 0); "
        f"Gini {summary['gini']:.3f}",
        "  gradient variance sum G^2/(n p): "
        + _variance_against_uniform(summary["variance"], summary["variance_uniform"]),
        f"  regularised (alpha={args.alpha:g}, beta={args.beta:g}): "
        + _variance_against_uniform(
            summary["regularised_variance"], summary["regularised_variance_uniform"]
        ),
    ]
    if "matched" in summary:
        lines.append(
            f"  variance of the estimator it minimises ({summary['matched_name']}): "
            + _variance_against_uniform(summary["matched"], summary["matched_uniform"])
        )
    return "\n".join(lines)


def _variance_against_uniform(variance: float, uniform: float) -> str:
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


def _add_prepare_demo(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "prepare-demo",
        help="build the embedded world: arithmetic data, tokenizer, warm-started tiny model",
        description="Build (or reuse, when already built with the same settings) the embedded "
        "demo world: synthetic arithmetic CoT data, a character tokenizer and a tiny Llama "
        "warm-started by supervised fine-tuning. Runs on a CPU in a few minutes.",
    )
    cmd.add_argument("--out", default="runs/demo-world", help="directory of the world")
    cmd.add_argument("--seed", type=int, default=0, help="seed of data, weights and training")
    cmd.add_argument("--force", action="store_true", help="rebuild even if it exists")
    cmd.set_defaults(handler=_run_prepare_demo)


def _run_prepare_demo(args: argparse.Namespace) -> int:
    from gvm_raft.tasks.demo_world import DemoWorldConfig, format_world_report, prepare_demo_world

    report = prepare_demo_world(args.out, DemoWorldConfig(seed=args.seed), force=args.force)
    print(format_world_report(report, args.out))
    return 0


def _config_keys_epilog() -> dict[str, Any]:
    from gvm_raft.config import config_reference

    return {
        "epilog": "config keys (key = default: meaning):\n" + config_reference(),
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }


def _add_train(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "train",
        help="train with RAFT / RAFT++ / GRPO and uniform or GVM allocation",
        description="Train from a YAML config; key=value arguments override its keys\n"
        "(e.g. allocation=uniform learning_rate=1e-6).",
        **_config_keys_epilog(),
    )
    cmd.add_argument("config", help="YAML config file")
    cmd.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    _add_quiet(cmd)
    cmd.set_defaults(handler=_run_train)


def _add_quiet(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars nor per-iteration lines (other processes than the main one are "
        "always quiet)",
    )


def _run_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from gvm_raft.config import load_config
    from gvm_raft.trainer import train

    run_dir = train(load_config(args.config, args.overrides), progress=not args.quiet)
    if PartialState().is_main_process:
        print(f"run directory: {run_dir}")
    return 0


def _add_demo(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "demo",
        help="the embedded CPU demo: uniform against GVM-RAFT++ on the tiny world, paired",
        description="Train uniform allocation and GVM (configs/demo.yaml settings) from the\n"
        "shipped tiny world's base model on the same prompts and seed, print both runs and their\n"
        "difference, and write demo.png (accuracy curves, where GVM put its samples).",
        **_config_keys_epilog(),
    )
    cmd.add_argument(
        "--world",
        default=None,
        help="a world directory, built by prepare-demo when missing (default: the shipped world)",
    )
    cmd.add_argument("--out", default="runs/demo", help="directory of the two runs and the plot")
    cmd.add_argument("--seed", type=int, default=0, help="seed of both runs")
    cmd.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    _add_quiet(cmd)
    cmd.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from gvm_raft.demo import run_demo

    summary = run_demo(args.world, args.out, args.overrides, not args.quiet, args.seed)
    if summary:
        print(summary)
    return 0


# gvm-raft eval's settings shared with training: the training config's names and defaults.
EVAL_SETTINGS = (
    "eval_samples",
    "eval_temperature",
    "eval_greedy",
    "eval_max_prompts",
    "top_p",
    "max_completion_length",
    "reward",
    "accept_threshold",
    "prompt_template",
    "system_prompt",
    "prompt_column",
    "answer_column",
    "rollout_backend",
    "rollout_batch_size",
    "vllm_gpu_memory_utilization",
    "mixed_precision",
    "attn_implementation",
    "seed",
)


def _add_eval(commands: argparse._SubParsersAction) -> None:
    import dataclasses
    import typing

    from gvm_raft.config import GVMConfig

    docs = {f.name: f.metadata["doc"] for f in dataclasses.fields(GVMConfig)}
    defaults = GVMConfig()
    cmd = commands.add_parser(
        "eval",
        help="accuracy, greedy accuracy, pass@k and majority vote of a model on benchmark files",
        description="Evaluate a Hugging Face causal LM (or a checkpoint's model/) on one or more "
        "benchmark files (JSON lines / parquet / saved dataset): per benchmark and averaged, as "
        "a markdown table and, with --out, a JSON file. Options are the training config's "
        "settings of the same name (defaults: --config's values, else the training defaults); "
        "mixed_precision sets the weights' dtype of the transformers backend.",
    )
    cmd.add_argument("model", help="Hugging Face causal LM directory (e.g. a checkpoint's model/)")
    cmd.add_argument("data", nargs="+", help="benchmark files; each is named by its file stem")
    cmd.add_argument(
        "--config", help="a training config or a run's config.yaml whose settings are defaults"
    )
    hints = typing.get_type_hints(GVMConfig)
    for name in EVAL_SETTINGS:
        flag = "--" + name.replace("_", "-")
        help_text = f"{docs[name]} (training default: {getattr(defaults, name)})"
        kinds = [k for k in typing.get_args(hints[name]) or [hints[name]] if k is not type(None)]
        if kinds[0] is bool:
            cmd.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kind = kinds[0] if kinds[0] in (int, float) else str
            cmd.add_argument(flag, type=kind, help=help_text)
    cmd.add_argument("--out", help="also write the results as JSON here")
    cmd.set_defaults(handler=_run_eval)


def _eval_config(args: argparse.Namespace) -> Any:
    """The training config (--config's or the defaults) with the given options applied; its
    checks name a bad value by its setting."""
    import dataclasses

    from gvm_raft.config import GVMConfig, load_config

    base = load_config(args.config) if args.config else GVMConfig()
    given = {name: getattr(args, name) for name in EVAL_SETTINGS}
    config = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    if not (config.eval_greedy or config.eval_samples):
        raise UserError("eval_samples must be > 0 unless eval_greedy is on")
    return config


def _run_eval(args: argparse.Namespace) -> int:
    from gvm_raft.evaluate import benchmark_table, evaluate_model

    if args.out:
        check_output_file(args.out)
    results = evaluate_model(args.model, args.data, _eval_config(args))
    print(benchmark_table(results))
    if args.out:
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    return 0


def _add_compare(commands: argparse._SubParsersAction) -> None:
    from gvm_raft.compare import STRATEGIES, ablations

    arm_names = [*STRATEGIES, *ablations(8, 64)]
    cmd = commands.add_parser(
        "compare",
        help="allocation strategies against uniform allocation, over seeds, on your config",
        description="Train every arm (an allocation strategy or a GVM ablation, for every "
        "algorithm) for every seed from the same config, paired (same base model, prompts and "
        "evaluation seeds), then write results.md: accuracy, mean accuracy over iterations and "
        "step- and compute-matched speed-ups against uniform with 95% bootstrap intervals over "
        "seeds, and plots. Runs resume; finished runs are only read. Arms: "
        + ", ".join(arm_names)
        + " (gvm-steps-xN takes N = num_generations).",
        **_config_keys_epilog(),
    )
    cmd.add_argument("config", help="YAML config every arm starts from")
    cmd.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    cmd.add_argument("--arms", nargs="+", default=["uniform", "gvm"], help="arms (with uniform)")
    cmd.add_argument("--algorithms", nargs="+", default=None, help="default: the config's")
    cmd.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of every arm")
    cmd.add_argument("--out", default="runs/compare", help="directory of the runs and results")
    cmd.add_argument(
        "--report-only", action="store_true", help="train nothing: report the finished runs"
    )
    _add_quiet(cmd)
    cmd.set_defaults(handler=_run_compare)


def _run_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gvm_raft.compare import STRATEGIES, make_arms, run_arms, write_results
    from gvm_raft.config import load_config

    if "uniform" not in args.arms:
        raise UserError("--arms must include uniform: every comparison is against it")
    config = load_config(args.config, args.overrides)
    algorithms = args.algorithms or [config.algorithm]
    strategies = [a for a in args.arms if a in STRATEGIES]
    variants = [a for a in args.arms if a not in STRATEGIES]
    arms = make_arms(
        algorithms, strategies, variants, config.num_generations, config.mini_batch_size
    )
    out = Path(args.out)
    results = run_arms(
        arms,
        args.seeds,
        args.config,
        out,
        args.overrides,
        progress=not args.quiet,
        train_missing=not args.report_only,
    )
    baselines = {a: f"{a}/uniform" for a in algorithms if f"{a}/uniform" in results}
    print(write_results(results, out, baselines))
    return 0


def _add_report(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "report",
        help="plots and a table from run directories (runs overlaid)",
        description="Read run directories (metrics.jsonl, allocations.jsonl, completions.jsonl, "
        "config.yaml) and write report.md plus PNG plots: test accuracy against iteration and "
        "against generated samples, the allocation against the acceptance rate, and example "
        "completions of each run's first, middle and last iteration.",
    )
    cmd.add_argument("runs", nargs="+", help="run directories")
    cmd.add_argument("--out", default="runs/report", help="directory of the report")
    cmd.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gvm_raft.report import write_report

    runs = [Path(run) for run in args.runs]
    for run in runs:
        if not (run / "metrics.jsonl").exists():
            raise UserError(f"{run} has no metrics.jsonl: pass run directories of gvm-raft train")
    print(write_report(runs, Path(args.out)))
    return 0


def _add_stats(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "stats",
        help="export a run iteration's per-prompt statistics in the allocate format",
        description="Write the per-prompt statistics (p_i, G_i) a training run estimated in one "
        "iteration as JSON lines that `gvm-raft allocate` reads (plus each prompt's dataset "
        "row id as row_id).",
    )
    cmd.add_argument("run", help="run directory of gvm-raft train")
    cmd.add_argument("--iteration", type=int, default=None, help="iteration (default: last)")
    cmd.add_argument("--out", required=True, help="statistics file to write")
    cmd.set_defaults(handler=_run_stats)


def _run_stats(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gvm_raft.checkpoint import ALLOCATIONS_FILE, read_allocations
    from gvm_raft.config import load_config
    from gvm_raft.stats import write_prompt_stats

    check_output_file(args.out)
    rows = read_allocations(Path(args.run))
    if not rows:
        raise UserError(f"{args.run} has no {ALLOCATIONS_FILE}: pass a run directory")
    chosen = [r for r in rows if args.iteration in (None, r["iteration"])]
    if not chosen:
        done = ", ".join(str(r["iteration"]) for r in rows)
        raise UserError(f"--iteration {args.iteration} is not in the run (iterations: {done})")
    row = chosen[-1]
    stats = PromptStats(np.array(row["grad_norm"]), np.array(row["accept_rate"]))
    write_prompt_stats(args.out, stats, row["row_id"])
    print(f"iteration {row['iteration']}: {len(row['grad_norm'])} prompts -> {args.out}")
    config_file = Path(args.run) / "config.yaml"
    if config_file.exists():
        print("the run's n_i again: " + _allocate_command(load_config(config_file), args.out))
    return 0


def _allocate_command(config: Any, stats_file: str) -> str:
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


if __name__ == "__main__":
    raise SystemExit(main())
