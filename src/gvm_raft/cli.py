"""The ``gvm-raft`` command line.

A user-facing error (``errors.UserError``: config, data, statistics file, model path, ...), an
unusable verifier and a file-system error print one line and exit with status 2; anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from gvm_raft import allocation
from gvm_raft.errors import UserError, VerifierError
from gvm_raft.fileio import atomic_write_text, check_output_file


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        status = args.handler(args)
    except (UserError, VerifierError, OSError) as err:
        print(f"gvm-raft {args.command}: error: {err}", file=sys.stderr)
        return 2
    if "torch.distributed" in sys.modules:  # a command that loaded torch may be in a group
        from gvm_raft.distributed import leave_process_group

        if leave_process_group():
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)  # see leave_process_group
    return status


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"  # the message, not the source line that raised it


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


# The allocate command's flags for allocate()'s keywords (their defaults are allocate()'s).
ALLOCATE_FLAGS = {
    "--reference-size": ("reference_size", int, "gvm-grpo: the group size it keeps (budget/m)"),
    "--alpha": ("alpha", float, "regulariser weight in q = p + alpha / p^(beta-1)"),
    "--beta": ("beta", float, "regulariser exponent in q = p + alpha / p^(beta-1)"),
    "--min": ("min_samples", int, "minimum samples per (unfiltered) prompt"),
    "--max": ("max_samples", int, "maximum samples per prompt (none: no cap)"),
    "--max-accept-rate": ("max_accept_rate", float, "a higher acceptance rate gets 0 (1 = off)"),
    "--min-expected-accepted": ("min_expected_accepted", float, "fewer expected gets 0 (0 = off)"),
}


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
        "objective), gvm-grpo (GRPO weighted to uniform's objective), uniform (the baseline), "
        "uniform-solved (even over the prompts with p_i > 0), knapsack (Knapsack-RL); the "
        "setting `allocation` takes these and gvm-matched (gvm-accuracy or gvm-grpo by algorithm)",
    )
    defaults = inspect.signature(allocation.allocate).parameters
    for flag, (dest, kind, text) in ALLOCATE_FLAGS.items():
        default = defaults[dest].default
        cmd.add_argument(
            flag, dest=dest, type=kind, default=default, help=f"{text}; default {default}"
        )
    cmd.add_argument("--out", help="write the sample sizes here (default: standard output)")
    cmd.set_defaults(handler=_run_allocate)


def _run_allocate(args: argparse.Namespace) -> int:
    from gvm_raft.allocation_report import allocate_file

    options = {dest: getattr(args, dest) for dest, _, _ in ALLOCATE_FLAGS.values()}
    sizes, summary, fallback = allocate_file(
        args.stats, args.budget, args.strategy, args.out, **options
    )
    if fallback:
        print(f"warning: {fallback}; falling back to uniform", file=sys.stderr)
    if args.out is None:
        print(sizes)
    print(summary, file=sys.stderr if args.out is None else sys.stdout)
    return 0


def _add_prepare_demo(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "prepare-demo",
        help="build the embedded world: arithmetic data, tokenizer, warm-started tiny model",
        description="Build the embedded world from scratch (the package ships one): arithmetic "
        "CoT data, a character tokenizer, a tiny Llama warm-started by SFT; minutes on a CPU.",
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


def _add_eval(commands: argparse._SubParsersAction) -> None:
    import dataclasses
    import typing

    from gvm_raft.config import GVMConfig
    from gvm_raft.evaluate import EVAL_SETTINGS

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


def _run_eval(args: argparse.Namespace) -> int:
    from gvm_raft.evaluate import EVAL_SETTINGS, benchmark_table, eval_config, evaluate_model

    if args.out:
        check_output_file(args.out)
    given = {name: getattr(args, name) for name in EVAL_SETTINGS}
    results = evaluate_model(args.model, args.data, eval_config(args.config, given))
    print(benchmark_table(results))
    if args.out:
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    return 0


def _add_compare(commands: argparse._SubParsersAction) -> None:
    from gvm_raft.compare import ARM_STRATEGIES, ablations

    arm_names = [*ARM_STRATEGIES, *ablations(8, 64)]
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
    from gvm_raft.compare import compare

    arms = (args.arms, args.algorithms, args.seeds)
    print(
        compare(args.config, args.overrides, *arms, args.out, not args.quiet, not args.report_only)
    )
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

    print(write_report([Path(run) for run in args.runs], Path(args.out)))
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
    from gvm_raft.allocation_report import export_run_stats

    print(export_run_stats(args.run, args.iteration, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
