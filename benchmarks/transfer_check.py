"""Does learning one group of prompts raise the others' accuracy? The transfer check of a world.

Trains uniform RAFT++ (the convergence benchmark's settings) on the train prompts of one group
only (a family of the families world, a difficulty level of the chains world), then evaluates
the base model and the trained one on every group's test prompts. In a world whose gain is
one habit shared by every problem the untrained groups rise with the trained one; in a world
whose groups share no skill they stay where they were.

Run: .venv/bin/python benchmarks/transfer_check.py --world-config families --group lower
     .venv/bin/python benchmarks/transfer_check.py --group 3        # the shipped chains world
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gvm_raft.checkpoint import latest_checkpoint
from gvm_raft.config import load_config
from gvm_raft.demo import bundled_config
from gvm_raft.evaluate import evaluate_model
from gvm_raft.fileio import read_jsonl, write_jsonl
from gvm_raft.tasks.demo_world import WORLDS, open_world, world_overrides
from gvm_raft.trainer import train


def group_key(row: dict) -> str:
    """A row's group: its family where the world has families, else its difficulty level."""
    return str(row.get("family") or row["difficulty"])


def split_by_group(path: Path, out: Path) -> dict[str, Path]:
    """One JSON lines file per group of the rows at path, in out; their paths by group."""
    rows = read_jsonl(path)
    groups = sorted({group_key(r) for r in rows})
    files = {g: out / f"{path.stem}-{g}.jsonl" for g in groups}
    for group, file in files.items():
        write_jsonl(file, [r for r in rows if group_key(r) == group])
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=None, help="a world dir (built if missing)")
    parser.add_argument("--world-config", choices=sorted(WORLDS), default="chains")
    parser.add_argument("--group", required=True, help="the family or level to train on")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    if args.world is None and args.world_config != "chains":
        args.world = Path("runs/worlds") / args.world_config
    world_dir, _ = open_world(args.world, WORLDS[args.world_config] if args.world else None)
    out = args.out or Path("runs/transfer") / f"{args.world_config}-{args.group}"
    out.mkdir(parents=True, exist_ok=True)
    train_files = split_by_group(world_dir / "data" / "train.jsonl", out)
    test_files = split_by_group(world_dir / "data" / "test.jsonl", out)
    if args.group not in train_files:
        parser.error(f"--group {args.group}: the world's groups are {', '.join(train_files)}")
    config = load_config(
        bundled_config("convergence.yaml"),
        [
            *world_overrides(world_dir),
            f"train_file={train_files[args.group]}",
            f"iterations={args.iterations}",
            f"eval_every={args.iterations}",
            f"seed={args.seed}",
            f"output_dir={out / 'run'}",
            "allocation=uniform",
            "resume=true",
        ],
    )
    run_dir = train(config, progress=False)
    checkpoint = latest_checkpoint(run_dir)
    paths = [str(test_files[g]) for g in test_files]
    before = evaluate_model(str(world_dir / "model"), paths, config)
    after = evaluate_model(str(checkpoint / "model"), paths, config)
    print(
        f"uniform RAFT++ on group {args.group} alone ({len(read_jsonl(train_files[args.group]))} "
        f"train prompts, {args.iterations} iterations of {config.prompts_per_iteration} x "
        f"{config.num_generations}, seed {args.seed}); test accuracy, "
        f"{config.eval_samples} samples per prompt:"
    )
    print("| group | test prompts | base | trained | change |\n|---|---|---|---|---|")
    for group, path in zip(test_files, paths, strict=True):
        name = Path(path).stem
        b, a = before[name]["accuracy"], after[name]["accuracy"]
        label = f"**{group}** (trained)" if group == args.group else group
        prompts = int(before[name]["prompts"])
        print(f"| {label} | {prompts} | {b:.3f} | {a:.3f} | {a - b:+.3f} |")
    print(f"wall time {(time.perf_counter() - start) / 60:.1f} min; run in {run_dir}")


if __name__ == "__main__":
    main()
