"""Atomic checkpoints: a run directory is enough to resume.

Layout: ``checkpoints/iteration-000003/`` holding ``model/`` (save_pretrained: safetensors
plus the tokenizer), ``optimizer.pt`` (whole, keyed by parameter name), ``scheduler.pt`` and
``trainer_state.json``;
``checkpoints/latest`` names the newest. A checkpoint is written to a temporary directory and
renamed into place, and ``latest`` is replaced atomically afterwards, so a kill at any moment
leaves a usable checkpoint. Under DeepSpeed ``optimizer.pt`` is replaced by the engine's own
state in ``checkpoints/deepspeed-000003/``, written by every process before the checkpoint.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from gvm_raft.config import ConfigError
from gvm_raft.fileio import atomic_write_text, building_dir

STATE_FILE = "trainer_state.json"


def save_checkpoint(
    run_dir: Path,
    iteration: int,
    model: Any,
    tokenizer: Any,
    optimizer_state: dict | None,
    scheduler: Any,
    state: dict,
    keep: int = 1,
) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iteration-{iteration:06d}"
    with building_dir(final) as staging:
        model.save_pretrained(staging / "model", safe_serialization=True)
        tokenizer.save_pretrained(staging / "model")
        if optimizer_state is not None:
            torch.save(optimizer_state, staging / "optimizer.pt")
        torch.save(scheduler.state_dict(), staging / "scheduler.pt")
        atomic_write_text(staging / STATE_FILE, json.dumps(state | {"iteration": iteration}))
    atomic_write_text(root / "latest", final.name + "\n")
    for pattern in ("iteration-*", "deepspeed-*"):
        for old in sorted(p for p in root.glob(pattern) if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def engine_state_dir(run_dir: Path, iteration: int) -> Path:
    """Where a DeepSpeed run keeps iteration's engine state (written by every process before
    the checkpoint itself, pruned with it)."""
    return run_dir / "checkpoints" / f"deepspeed-{iteration:06d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / STATE_FILE).exists() else None


def load_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


def load_scheduler(checkpoint: Path, scheduler: Any) -> None:
    scheduler.load_state_dict(torch.load(checkpoint / "scheduler.pt", weights_only=True))


def read_optimizer_state(checkpoint: Path) -> dict:
    """The saved optimizer state (whole, keyed by parameter name)."""
    path = checkpoint / "optimizer.pt"
    if not path.exists():
        raise ConfigError(
            f"{checkpoint} has no optimizer.pt: it was written under DeepSpeed, whose optimizer "
            "state only DeepSpeed reads; resume it under the same DeepSpeed config"
        )
    return torch.load(path, weights_only=True)
