"""Child processes of the tests: the environment that lets them import the test helpers, a
2-process torchrun, and a small training config for such runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import tiny_run_settings

TESTS = Path(__file__).parent


def child_env() -> dict[str, str]:
    """This environment with the tests directory (reward and engine helpers) importable."""
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}


def torchrun(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 ARGS``, output captured."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *args]
    return subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=timeout)


def write_run_config(tiny_world: Path, path: Path, run_dir: Path, *extra: str) -> Path:
    """The tiny run for 2 processes, with odd sizes (5 prompts, mini-batches of 7, micro-batches
    of 3) so that shares are uneven; extra lines (key: value) override the settings."""
    settings = tiny_run_settings(
        tiny_world,
        run_dir,
        prompts_per_iteration=5,
        max_completion_length=12,
        mini_batch_size=7,
        micro_batch_size=3,
    )
    path.write_text("\n".join([*(f"{key}: {value}" for key, value in settings.items()), *extra]))
    return path
