"""A run directory's layout, its readers and its writers: the one place that names its files.

    config.yaml         the run's settings (GVMConfig), written at its start
    metrics.jsonl       one row per iteration (iteration 0: the base model's evaluation)
    allocations.jsonl   per iteration: each prompt's row_id, p_i, G_i and samples n_i
    completions.jsonl   a sample of what the model wrote, with its prompt's statistics
    train_data.json     the training prompts' count and digest (a resume on other data is refused)
    checkpoints/        iteration-NNNNNN/ and the ``latest`` pointer (see checkpoint.py)

A comparison directory (``gvm-raft compare``, the demo, the benchmark) holds one run directory
per arm and seed: ``runs/<algorithm>/<arm>/seed-<s>/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gvm_raft.config import GVMConfig, load_config, save_config
from gvm_raft.fileio import append_jsonl, atomic_write_text, read_jsonl, write_jsonl

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
ALLOCATIONS_FILE = "allocations.jsonl"
COMPLETIONS_FILE = "completions.jsonl"
TRAIN_DATA_FILE = "train_data.json"
CHECKPOINTS_DIR = "checkpoints"
LOG_FILES = (METRICS_FILE, ALLOCATIONS_FILE, COMPLETIONS_FILE)
# What a comparison's report reads of a run: an archive of these stands in for the finished run.
REPORTED_FILES = (CONFIG_FILE, METRICS_FILE, ALLOCATIONS_FILE)


def read_config(run_dir: Path) -> GVMConfig:
    """The settings the run was trained with (checked as any config is)."""
    return load_config(run_dir / CONFIG_FILE)


def recorded_settings(run_dir: Path) -> dict[str, Any]:
    """config.yaml as written, unchecked ({} when there is none): for labels and reports."""
    path = run_dir / CONFIG_FILE
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def has_config(run_dir: Path) -> bool:
    return (run_dir / CONFIG_FILE).exists()


def write_config(config: GVMConfig, run_dir: Path) -> None:
    save_config(config, run_dir / CONFIG_FILE)


def read_metrics(run_dir: Path) -> list[dict]:
    """metrics.jsonl's rows ([] when there is none)."""
    return read_jsonl(run_dir / METRICS_FILE)


def read_allocations(run_dir: Path) -> list[dict]:
    """allocations.jsonl's rows ([] when there is none)."""
    return read_jsonl(run_dir / ALLOCATIONS_FILE)


def read_completions(run_dir: Path) -> list[dict]:
    """completions.jsonl's records ([] when there is none)."""
    return read_jsonl(run_dir / COMPLETIONS_FILE)


def append_metrics(run_dir: Path, row: dict) -> None:
    append_jsonl(run_dir / METRICS_FILE, [row])


def append_allocation(run_dir: Path, row: dict) -> None:
    append_jsonl(run_dir / ALLOCATIONS_FILE, [row])


def append_completions(run_dir: Path, records: list[dict]) -> None:
    append_jsonl(run_dir / COMPLETIONS_FILE, records)


def keep_logs_until(run_dir: Path, iteration: int | None) -> None:
    """Drop the log rows after ``iteration`` (all of them for None): what a killed run wrote
    after its last checkpoint, recomputed on resume. A row torn by the kill is dropped too."""
    for name in LOG_FILES:
        path = run_dir / name
        if path.exists():
            rows = read_jsonl(path, drop_torn_tail=True)
            kept = [r for r in rows if iteration is not None and r["iteration"] <= iteration]
            write_jsonl(path, kept)


def checkpoints_dir(run_dir: Path) -> Path:
    return run_dir / CHECKPOINTS_DIR


def comparison_run_dir(comparison_dir: Path, algorithm: str, arm: str, seed: int) -> Path:
    """The run directory of one arm and seed in a comparison directory."""
    return comparison_dir / "runs" / algorithm / arm / f"seed-{seed}"


def archive_comparison(comparison_dir: Path, archive_dir: Path) -> list[Path]:
    """Copy the REPORTED_FILES of every finished run in a comparison directory (and its sweeps)
    into archive_dir, in the same layout; a linked run is copied as the run it links to. The
    archive is a comparison directory whose runs are finished and only read: a report on it,
    or a comparison that reuses it, needs no weights. Returns the archived run directories."""
    archived = []
    for run_dir in sorted(comparison_dir.glob("**/runs/*/*/seed-*")):
        iterations = recorded_settings(run_dir).get("iterations")
        if iterations is None or len(read_metrics(run_dir)) != iterations + 1:
            continue
        target = archive_dir / run_dir.relative_to(comparison_dir)
        target.mkdir(parents=True, exist_ok=True)
        for name in REPORTED_FILES:
            if (run_dir / name).exists():
                atomic_write_text(target / name, (run_dir / name).read_text())
        archived.append(target)
    return archived


def comparison_runs(comparison_dir: Path, label: str) -> list[Path]:
    """The run directories, one per seed, of the arm ``algorithm/arm`` in a comparison."""
    return sorted((comparison_dir / "runs" / label).glob("seed-*"))


def missing_iterations(run_dir: Path, done: int) -> list[int]:
    """The iterations 1..done without a row in metrics.jsonl: a run whose log was deleted or
    edited after its checkpoint (a resume would write a history with holes)."""
    logged = {r["iteration"] for r in read_jsonl(run_dir / METRICS_FILE, drop_torn_tail=True)}
    return [i for i in range(1, done + 1) if i not in logged]
