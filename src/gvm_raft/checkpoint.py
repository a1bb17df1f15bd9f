"""Checkpoints and resume: a run directory (rundir.py) is enough to continue a run.

Checkpoint layout: ``checkpoints/iteration-000003/`` holding ``model/`` (save_pretrained:
safetensors plus the tokenizer), ``optimizer.pt`` (whole, keyed by parameter name),
``scheduler.pt`` and ``trainer_state.json``; ``checkpoints/latest`` names the newest. A
checkpoint is written to a temporary directory and renamed into place, and ``latest`` is
replaced atomically afterwards, so a kill at any moment leaves a usable checkpoint. Only the
main process writes; every process reads the same checkpoint when resuming. Under DeepSpeed
``optimizer.pt`` is replaced by the engine's own state in ``checkpoints/deepspeed-000003/``,
written by every process before the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gvm_raft.config import ConfigError, GVMConfig, check_resume_matches
from gvm_raft.data import PromptRow
from gvm_raft.fileio import atomic_write_text, building_dir
from gvm_raft.models import no_progress_bars
from gvm_raft.rundir import (
    METRICS_FILE,
    TRAIN_DATA_FILE,
    checkpoints_dir,
    missing_iterations,
    read_config,
)

STATE_FILE = "trainer_state.json"


def check_resumable(config: GVMConfig, run_dir: Path) -> int:
    """Refuse to write over a run without resume=true, to resume one with settings that change
    what it trains, to shorten it below the iterations it has done, and to resume one whose
    metrics log lacks some of them; returns the iterations done (0 for a new run)."""
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        return 0
    if not config.resume:
        raise ConfigError(
            f"{run_dir} already holds a run: pass resume=true to continue it, or choose another "
            "output_dir"
        )
    check_resume_matches(read_config(run_dir), config, run_dir)
    done = int(load_state(checkpoint)["iteration"])
    if config.iterations < done:
        raise ConfigError(
            f"{run_dir} has {done} iterations done; iterations={config.iterations} would record "
            f"a shorter run than its metrics hold: set iterations >= {done}"
        )
    missing = missing_iterations(run_dir, done)
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        raise ConfigError(
            f"{run_dir / METRICS_FILE} has no row for iteration {shown} of the {done} its "
            "checkpoint has done (the log was deleted or edited): resuming would record a "
            "history with holes; restore the file, or start a new output_dir"
        )
    return done


def check_training_data(
    run_dir: Path, rows: Sequence[PromptRow], resumed: bool, write: bool
) -> None:
    """Fingerprint the training prompts (sha256 of every row's problem and answer) in
    train_data.json at a run's start (``write``: the main process), and refuse to resume it on
    other prompts."""
    digest = hashlib.sha256(
        json.dumps([[r.problem, r.answer] for r in rows], ensure_ascii=False).encode()
    ).hexdigest()
    path = run_dir / TRAIN_DATA_FILE
    if resumed and path.exists():
        saved = json.loads(path.read_text())
        if saved["sha256"] != digest:
            raise ConfigError(
                f"the training prompts differ from those {run_dir} was trained on ({saved['rows']} "
                f"rows then, {len(rows)} now, other content): a resumed run must see the same "
                "data; restore the train_file or start a new output_dir"
            )
        return
    if write:
        atomic_write_text(path, json.dumps({"rows": len(rows), "sha256": digest}) + "\n")


def save_checkpoint(
    run_dir: Path,
    iteration: int,
    model: Any,
    tokenizer: Any,
    optimizer: dict | None,
    scheduler: Any,
    state: dict,
    keep: int = 1,
) -> Path:
    """Write checkpoint ``iteration`` atomically (optimizer: the whole state keyed by parameter
    name, None under DeepSpeed), point ``latest`` at it and prune to the ``keep`` newest."""
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iteration-{iteration:06d}"
    try:
        with building_dir(final) as staging:
            with no_progress_bars():
                model.save_pretrained(staging / "model", safe_serialization=True)
            tokenizer.save_pretrained(staging / "model")
            if optimizer is not None:
                torch.save(optimizer, staging / "optimizer.pt")
            torch.save(scheduler.state_dict(), staging / "scheduler.pt")
            atomic_write_text(staging / STATE_FILE, json.dumps(state | {"iteration": iteration}))
    except OSError as err:  # a full disk, most often: say what, and that nothing is lost
        raise OSError(
            err.errno,
            f"writing checkpoint {final.name} failed ({err.strerror or err}); the previous "
            f"checkpoint is intact: free space in {root} and resume with resume=true",
        ) from err
    atomic_write_text(root / "latest", final.name + "\n")
    _prune(root, iteration, keep)
    return final


def engine_state_dir(run_dir: Path, iteration: int) -> Path:
    """Where a DeepSpeed run keeps iteration's engine state (written by every process before
    the checkpoint itself, pruned with it)."""
    return checkpoints_dir(run_dir) / f"deepspeed-{iteration:06d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``checkpoints/latest`` names, or None when the run has none yet.

    If the pointer names a missing or incomplete checkpoint (no trainer state), the newest
    complete one is used instead, with a warning; if there is none, the run is refused rather
    than silently restarted from scratch over its logs.
    """
    root = checkpoints_dir(run_dir)
    pointer = root / "latest"
    if not pointer.exists():
        return None
    named = root / pointer.read_text().strip()
    if (named / STATE_FILE).exists():
        return named
    complete = sorted(p for p in root.glob("iteration-*") if (p / STATE_FILE).exists())
    if not complete:
        raise ConfigError(
            f"{pointer} names {named.name}, which is missing or incomplete, and {root} holds no "
            f"other complete checkpoint: this run cannot be resumed; remove {root} (and the "
            "run's logs) to start it over"
        )
    warnings.warn(
        f"{pointer} names {named.name}, which is missing or incomplete; resuming from "
        f"{complete[-1].name}, the newest complete checkpoint",
        stacklevel=2,
    )
    return complete[-1]


def remove_staging(run_dir: Path) -> None:
    """Delete the staging directories of checkpoint writes that were killed (``.iteration-*``):
    each may hold a whole model and optimizer state."""
    for staging in (checkpoints_dir(run_dir)).glob(".iteration-*"):
        shutil.rmtree(staging, ignore_errors=True)


def _prune(root: Path, iteration: int, keep: int) -> None:
    """Keep the checkpoint (and DeepSpeed state) of ``iteration`` and the keep - 1 newest
    before it; delete the rest, including higher-numbered ones left by an earlier run in the
    same directory (pruning by name alone kept those and deleted the new checkpoint)."""
    for pattern in ("iteration-*", "deepspeed-*"):
        dirs = {int(p.name.split("-")[1]): p for p in root.glob(pattern) if p.is_dir()}
        earlier = sorted(n for n in dirs if n < iteration)
        kept = {iteration, *earlier[len(earlier) - (keep - 1) :]} if keep > 1 else {iteration}
        for number, path in dirs.items():
            if number not in kept:
                shutil.rmtree(path, ignore_errors=True)


def load_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


def load_scheduler(checkpoint: Path, scheduler: Any) -> None:
    scheduler.load_state_dict(_load_tensors(checkpoint / "scheduler.pt"))


def _load_tensors(path: Path) -> Any:
    """torch.load of a checkpoint file (weights only), refusing a damaged file by name."""
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing: the checkpoint is incomplete") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ConfigError(
            f"{path} is damaged ({type(err).__name__}); resume from an earlier checkpoint "
            f"(write its name into {path.parent.parent / 'latest'}) or start the run over"
        ) from None


def read_optimizer_state(checkpoint: Path) -> dict:
    """The saved optimizer state (whole, keyed by parameter name)."""
    path = checkpoint / "optimizer.pt"
    if not path.exists():
        raise ConfigError(
            f"{checkpoint} has no optimizer.pt: it was written under DeepSpeed, whose optimizer "
            "state only DeepSpeed reads; resume it under the same DeepSpeed config"
        )
    return _load_tensors(path)
