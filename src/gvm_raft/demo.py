"""``gvm-raft demo``: the embedded world, one GVM-RAFT++ run on it, and its report."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from accelerate import PartialState

from gvm_raft.config import load_config
from gvm_raft.report import write_report
from gvm_raft.tasks.demo_world import format_world_report, prepare_demo_world
from gvm_raft.trainer import train


def bundled_config(name: str = "demo.yaml") -> Path:
    """A config of configs/, shipped inside the package as well for pip installs."""
    return Path(str(resources.files("gvm_raft") / "configs" / name))


def run_demo(world_dir: str, out_dir: str, overrides: list[str], progress: bool = True) -> Path:
    """Check the overrides, prepare (or reuse) the world, train (or resume) the demo run, and
    write its report.

    Under several processes (accelerate launch / torchrun) the main process builds the world
    and writes the report; the others wait for it.
    """
    world = Path(world_dir)
    config = load_config(
        bundled_config(),
        overrides,
        model_name_or_path=str(world / "model"),
        train_file=str(world / "data" / "train.jsonl"),
        test_file=str(world / "data" / "test.jsonl"),
        output_dir=str(out_dir),
        resume=True,  # a re-run continues (or just re-reports) the demo run
    )
    state = PartialState(cpu=not torch.cuda.is_available())
    with state.main_process_first():
        report = prepare_demo_world(world_dir, progress=progress)
    if state.is_main_process and progress:
        print(format_world_report(report, world_dir), flush=True)
    run_dir = train(config, progress=progress)
    if state.is_main_process:
        print(write_report([run_dir], run_dir / "report"), flush=True)
    return run_dir
