"""The ``gvm-raft`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from gvm_raft import allocation
from gvm_raft.fileio import atomic_write_text
from gvm_raft.stats import read_prompt_stats


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
    except (ValueError, OSError) as err:
        print(f"gvm-raft {args.command}: error: {err}", file=sys.stderr)
        return 2
    _leave_process_group()
    return status


def _leave_process_group() -> None:
    """Under torchrun / accelerate launch: wait for every process, then close the group, so
    no process exits while another still talks to it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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
    _add_report(commands)
    _add_stats(commands)
    return parser


def at_least(low: int):
    """An argparse type: an integer >= low, refused by argparse with the option's name."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}; got {value}")
        return value

    return parse


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
        "--method",
        choices=allocation.METHODS,
        default="rounding",
        help="rounding (reference), exact (integer optimum) or uniform (baseline)",
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
    stats = read_prompt_stats(args.stats)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sizes = allocation.allocate(
            stats.grad_norms,
            stats.accept_rates,
            args.budget,
            args.method,
            alpha=args.alpha,
            beta=args.beta,
            min_samples=args.min_samples,
            max_samples=args.max_samples,
            max_accept_rate=args.max_accept_rate,
            min_expected_accepted=args.min_expected_accepted,
        )
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    text = json.dumps(sizes.tolist())
    summary = allocation.allocation_summary(
        sizes, stats.grad_norms, stats.accept_rates, args.alpha, args.beta
    )
    report = sys.stdout
    if args.out:
        atomic_write_text(args.out, text + "\n")
    else:
        print(text)
        report = sys.stderr
    print(_format_allocation_summary(summary, len(sizes), args), file=report)
    return 0


def _format_allocation_summary(summary: dict[str, float], prompts: int, args) -> str:
    lines = [
        f"method {args.method}: {summary['total']} samples over {prompts} prompts"
        + (f" -> {args.out}" if args.out else ""),
        f"  per prompt: min {summary['min']}, median {summary['median']:g}, "
        f"max {summary['max']}; {summary['zero_prompts']} prompts get 0 "
        f"({summary['dropped_prompts']} of them with G > 0 and p > 0); "
        f"Gini {summary['gini']:.3f}",
        f"  gradient variance sum G^2/(n p): {summary['variance']:.6g} "
        f"(uniform {summary['variance_uniform']:.6g}, ratio {summary['variance_ratio']:.4f})",
        f"  regularised (alpha={args.alpha:g}, beta={args.beta:g}): "
        f"{summary['regularised_variance']:.6g} "
        f"(uniform {summary['regularised_variance_uniform']:.6g})",
    ]
    return "\n".join(lines)


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
    cmd.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from gvm_raft.config import load_config
    from gvm_raft.trainer import train

    run_dir = train(load_config(args.config, args.overrides))
    if PartialState().is_main_process:
        print(f"run directory: {run_dir}")
    return 0


def _add_demo(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "demo",
        help="the embedded CPU demo: prepare the tiny world, train GVM-RAFT++, report",
        description="Prepare the embedded world if missing, train GVM-RAFT++ on it for a few\n"
        "iterations (configs/demo.yaml settings), evaluate, and write a report.",
        **_config_keys_epilog(),
    )
    cmd.add_argument("--world", default="runs/demo-world", help="directory of the demo world")
    cmd.add_argument("--out", default="runs/demo", help="run directory")
    cmd.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    cmd.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from gvm_raft.demo import run_demo

    run_demo(args.world, args.out, args.overrides)
    return 0


def _add_eval(commands: argparse._SubParsersAction) -> None:
    from gvm_raft.config import TrainConfig

    defaults = TrainConfig()
    cmd = commands.add_parser(
        "eval",
        help="accuracy, greedy accuracy, pass@k and majority vote of a model on benchmark files",
        description="Evaluate a Hugging Face causal LM on one or more benchmark files (JSON "
        "lines / parquet / saved dataset): per benchmark and averaged, as a markdown table and, "
        "with --out, a JSON file.",
    )
    cmd.add_argument("model", help="Hugging Face causal LM directory (e.g. a checkpoint's model/)")
    cmd.add_argument("data", nargs="+", help="benchmark files; each is named by its file stem")
    cmd.add_argument(
        "--samples", type=at_least(0), default=4, help="k samples per problem (0 = none)"
    )
    cmd.add_argument("--temperature", type=float, default=1.0, help="temperature of the k samples")
    cmd.add_argument("--top-p", type=float, default=1.0, help="nucleus threshold of the samples")
    cmd.add_argument(
        "--max-new-tokens", type=at_least(1), default=1024, help="tokens per completion"
    )
    cmd.add_argument(
        "--greedy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also report greedy accuracy",
    )
    cmd.add_argument("--reward", default="math", help="math, arithmetic or module:function")
    cmd.add_argument("--accept-threshold", type=float, default=1.0, help="reward counted correct")
    cmd.add_argument("--prompt-template", default="auto", help="auto, chat, plain or a format")
    cmd.add_argument("--system-prompt", default=defaults.system_prompt, help="chat instruction")
    cmd.add_argument("--prompt-column", default="problem", help="column of the problem text")
    cmd.add_argument("--answer-column", default="answer", help="column of the reference answer")
    cmd.add_argument(
        "--max-prompts", type=at_least(1), default=None, help="first N problems per file"
    )
    cmd.add_argument(
        "--backend", choices=("hf", "vllm"), default="hf", help="generation engine (vllm: GPU)"
    )
    cmd.add_argument(
        "--gpu-memory-utilization", type=float, default=0.9, help="vLLM's share of GPU memory"
    )
    cmd.add_argument(
        "--batch-size", type=at_least(1), default=64, help="sequences per generate call (hf)"
    )
    cmd.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="weights and compute of the hf backend (bfloat16 halves GPU memory)",
    )
    cmd.add_argument("--attn-implementation", help="hf attention kernel: sdpa, flash_attention_2")
    cmd.add_argument("--seed", type=at_least(0), default=0, help="sampling seed")
    cmd.add_argument("--out", help="also write the results as JSON here")
    cmd.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gvm_raft.data import load_prompts, render_prompt
    from gvm_raft.evaluate import benchmark_table, evaluate_benchmarks
    from gvm_raft.models import load_tokenizer
    from gvm_raft.rewards import close_reward, load_reward
    from gvm_raft.rollout.base import SamplingParams

    if args.samples < 0 or not (args.greedy or args.samples):
        raise ValueError("--samples must be >= 0, and > 0 unless --greedy is on")
    names = [Path(p).stem for p in args.data]
    if len(set(names)) < len(names):
        names = list(args.data)
    benchmarks = {
        name: load_prompts(path, args.prompt_column, args.answer_column)[: args.max_prompts]
        for name, path in zip(names, args.data, strict=True)
    }
    tokenizer = load_tokenizer(args.model, "model")
    rollout = _eval_rollout(args, tokenizer)
    reward_fn = load_reward(args.reward)
    try:
        results = evaluate_benchmarks(
            rollout,
            benchmarks,
            lambda problem: render_prompt(
                tokenizer, problem, args.prompt_template, args.system_prompt
            ),
            reward_fn,
            args.samples,
            SamplingParams(args.temperature, args.top_p, args.max_new_tokens),
            args.seed,
            args.greedy,
            args.accept_threshold,
        )
    finally:
        close_reward(reward_fn)
    print(benchmark_table(results))
    if args.out:
        atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    return 0


def _eval_rollout(args: argparse.Namespace, tokenizer: Any) -> Any:
    """The generation backend of ``gvm-raft eval``: transformers generate or a vLLM engine."""
    import torch

    from gvm_raft.models import load_causal_lm
    from gvm_raft.rollout.hf import HFRollout

    if args.backend == "vllm":
        from gvm_raft.rollout.vllm import VLLMRollout, check_vllm_installed

        try:
            check_vllm_installed()
        except ImportError as err:
            raise ValueError(f"--backend vllm: {err}; or use --backend hf") from None
        return VLLMRollout(args.model, tokenizer, args.gpu_memory_utilization)
    model = load_causal_lm(
        args.model, "model", getattr(torch, args.dtype), args.attn_implementation
    )
    if torch.cuda.is_available():
        model = model.cuda()
    return HFRollout(model, tokenizer, args.batch_size)


def _add_report(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "report",
        help="plots and a table from run directories (runs overlaid)",
        description="Read run directories (metrics.jsonl, allocations.jsonl, config.yaml) and "
        "write report.md plus PNG plots: test accuracy against iteration and against generated "
        "samples, and the allocation against the acceptance rate.",
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
            raise ValueError(f"{run} has no metrics.jsonl: pass run directories of gvm-raft train")
    print(write_report(runs, Path(args.out)))
    return 0


def _add_stats(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "stats",
        help="export a run iteration's per-prompt statistics in the allocate format",
        description="Write the per-prompt statistics (p_i, G_i) a training run estimated in one "
        "iteration as JSON lines that `gvm-raft allocate` reads (plus each prompt's dataset "
        "row as prompt_index).",
    )
    cmd.add_argument("run", help="run directory of gvm-raft train")
    cmd.add_argument("--iteration", type=int, default=None, help="iteration (default: last)")
    cmd.add_argument("--out", required=True, help="statistics file to write")
    cmd.set_defaults(handler=_run_stats)


def _run_stats(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from gvm_raft.fileio import read_jsonl
    from gvm_raft.run import ALLOCATIONS_FILE
    from gvm_raft.stats import PromptStats, write_prompt_stats

    rows = read_jsonl(Path(args.run) / ALLOCATIONS_FILE)
    if not rows:
        raise ValueError(f"{args.run} has no {ALLOCATIONS_FILE}: pass a run directory")
    chosen = [r for r in rows if args.iteration in (None, r["iteration"])]
    if not chosen:
        done = ", ".join(str(r["iteration"]) for r in rows)
        raise ValueError(f"--iteration {args.iteration} is not in the run (iterations: {done})")
    row = chosen[-1]
    stats = PromptStats(np.array(row["grad_norm"]), np.array(row["accept_rate"]))
    write_prompt_stats(args.out, stats, row["prompt_index"])
    print(f"iteration {row['iteration']}: {len(row['grad_norm'])} prompts -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
