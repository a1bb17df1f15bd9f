"""Convergence of GVM against uniform allocation (and Knapsack-RL, DAPO filtering, ablations).

From one base model and one train/test split (the embedded world shipped with the package, or
--world; --world-config families builds the second world, whose prompt families share no
skill, in runs/worlds/families unless --world says where), trains every arm for every seed
with the same stage-2 budget, iterations and optimizer steps per iteration, then writes
results.md (per algorithm: final/best accuracy, mean accuracy over iterations and its paired
difference from uniform, step- and compute-matched speed-ups against uniform, each with a 95%
bootstrap interval over seeds, optimizer steps, estimated gradient variance, the
evaluation's standard error) and PNG plots into --out. The main arms (uniform, GVM, the matched
allocation gvm-matched and the A/A calibration uniform-aa: uniform with other sampling seeds)
run --seeds; Knapsack-RL, DAPO and the ablations run --extra-seeds. --sweep KEY=V1,V2,...
reruns uniform and GVM (or --sweep-strategies) for every value of one setting (in
--out/sweep-KEY/KEY=V) and writes sweep.md and a plot of GVM's gain against it. Killed runs
resume; finished runs are only read, and a run whose settings equal a finished one's in
--reuse, --out or their sweeps (the k = 4 point of a stage-1 sweep is the main comparison's
GVM) is linked to it instead of trained again; --archive copies finished runs' logs. The
harness is `gvm-raft compare` (see gvm_raft/compare.py); this script adds the embedded world,
the seed split and the sweeps.

Run: .venv/bin/python benchmarks/convergence.py [--seeds 0 1 2 3 4] [--extra-seeds 0 1 2]
     [--sweep num_generations=4,8,16 [--sweep-only]] [--report-only] [key=value ...]
(`make convergence` runs every invocation behind the README's results, `make
convergence-baselines` those of docs/results.md's earlier tables.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gvm_raft.compare import ARM_STRATEGIES, ablations, make_arms, run_arms
from gvm_raft.compare_report import write_results, write_sweep
from gvm_raft.config import load_config
from gvm_raft.demo import bundled_config
from gvm_raft.errors import UserError
from gvm_raft.rundir import archive_comparison
from gvm_raft.tasks.demo_world import WORLDS, format_world_report, open_world, world_overrides

MAIN_ARMS = ("uniform", "gvm", "gvm-matched", "uniform-aa")


def comparison_dirs(roots: list[Path]) -> list[Path]:
    """Every comparison directory under roots (each once): each root and each value of its
    sweeps."""
    unique = dict.fromkeys(roots)
    return [d for root in unique for d in (root, *sorted(root.glob("sweep-*/*=*")))]


def relative_to_cwd(path: Path) -> Path:
    """path relative to the working directory when it lies under it (the shipped world seen
    from the repository's root): the runs' config.yaml then records the same paths in every
    clone, so runs archived in one clone are read as the same settings in another."""
    resolved = path.resolve()
    return resolved.relative_to(Path.cwd()) if resolved.is_relative_to(Path.cwd()) else path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--world",
        type=Path,
        default=None,
        help="a world directory, built when missing (default: the world shipped with the package)",
    )
    parser.add_argument(
        "--world-config",
        choices=sorted(WORLDS),
        default="chains",
        help="the world to build in --world: chains (the shipped one) or families",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/convergence"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--extra-seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="seeds of the baselines and ablations (a subset of --seeds keeps them paired)",
    )
    parser.add_argument("--algorithms", nargs="+", default=["raft++", "grpo"])
    parser.add_argument("--strategies", nargs="+", default=list(ARM_STRATEGIES))
    parser.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="rerun uniform and GVM for every value of one setting (repeatable)",
    )
    parser.add_argument(
        "--ablations",
        nargs="*",
        default=None,
        help="GVM ablations (default: all; none: --ablations)",
    )
    parser.add_argument(
        "--ablation-algorithms",
        nargs="+",
        default=None,
        help="the algorithms that run the ablations (default: the first of --algorithms)",
    )
    parser.add_argument(
        "--sweep-strategies",
        nargs="+",
        default=["uniform", "gvm"],
        help="the strategies each sweep value reruns (uniform first: the baseline)",
    )
    parser.add_argument(
        "--sweep-only",
        action="store_true",
        help="run (or report) the sweeps alone, not the arms of the main comparison",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        nargs="*",
        default=None,
        help="comparison directories (with their sweeps) whose finished runs stand in for runs "
        "with the same settings here, linked instead of trained again (default: "
        "runs/convergence, when it exists)",
    )
    parser.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="copy every finished run's config and logs (no weights) into this comparison "
        "directory, where --report-only or --reuse reads them in any clone (the README's "
        "tables are archived in benchmarks/results/)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: report the finished runs found in --out",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args()
    if "uniform" not in args.strategies or "uniform" not in args.sweep_strategies:
        parser.error("--strategies must include uniform: every speed-up is measured against it")
    for path in args.reuse or []:
        if "=" in path.name:
            parser.error(
                f"--reuse {path} looks like a key=value override: put overrides before --reuse"
            )
        if not path.is_dir():
            parser.error(f"--reuse {path} is not a comparison directory")
    if args.reuse is None:
        args.reuse = [Path("runs/convergence")]
    start = time.perf_counter()
    if args.world is None and args.world_config != "chains":
        args.world = Path("runs/worlds") / args.world_config
    world_config = WORLDS[args.world_config] if args.world else None
    if args.report_only and args.world is not None and not (args.world / "world.json").exists():
        world_dir = args.world  # archived runs are read by the world's paths, not its weights
        print(f"report only: {world_dir} is not built here; runs are read as recorded")
    else:
        world_dir, report = open_world(args.world, world_config)
        print(format_world_report(report, world_dir), flush=True)
    base = bundled_config("convergence.yaml")
    world = world_overrides(relative_to_cwd(world_dir), world_config)
    config = load_config(base, [*world, *args.overrides])
    names = list(ablations(config.num_generations, config.mini_batch_size))
    arms = make_arms(
        args.algorithms,
        args.strategies,
        names if args.ablations is None else args.ablations,
        config.num_generations,
        config.mini_batch_size,
        args.ablation_algorithms,
    )
    overrides = [*world, *args.overrides]
    train_missing = not args.report_only
    if not args.sweep_only:
        extra = {arm.name: args.extra_seeds for arm in arms if arm.name not in MAIN_ARMS}
        results = run_arms(
            arms,
            args.seeds,
            base,
            args.out,
            overrides,
            train_missing=train_missing,
            arm_seeds=extra,
            reuse_from=comparison_dirs([*args.reuse, args.out]),
        )
        baselines = {a: f"{a}/uniform" for a in args.algorithms if f"{a}/uniform" in results}
        print(write_results(results, args.out, baselines))
    for sweep in args.sweep:
        key, _, values = sweep.partition("=")
        main_arms = make_arms(args.algorithms, args.sweep_strategies, [], 1, 1)
        by_value: dict[str, dict[str, list[list[dict]]]] = {v: {} for v in values.split(",")}
        for seed in args.seeds:  # seed by seed: a sweep cut short has every value paired
            for value, found in by_value.items():
                done = run_arms(
                    main_arms,
                    [seed],
                    base,
                    args.out / f"sweep-{key}" / f"{key}={value}",
                    [*overrides, f"{key}={value}"],
                    train_missing=train_missing,
                    reuse_from=comparison_dirs([*args.reuse, args.out]),
                )
                for label, runs in done.items():
                    found.setdefault(label, []).extend(runs)
        for strategy in args.sweep_strategies[1:] if args.sweep_strategies[0] == "uniform" else []:
            print(write_sweep(by_value, key, args.out / f"sweep-{key}", strategy))
    if args.archive is not None:
        archived = archive_comparison(args.out, args.archive)
        print(f"archived {len(archived)} finished runs' logs in {args.archive}")
    print(f"total wall time {(time.perf_counter() - start) / 60:.1f} min; results in {args.out}")


if __name__ == "__main__":
    try:
        main()
    except UserError as err:  # a setting to fix: its message, not a traceback
        sys.exit(f"convergence.py: error: {err}")
