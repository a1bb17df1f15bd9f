"""Child processes of the tests: the environment that lets them import the test helpers, a
2-process torchrun, and a small training config for such runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def child_env() -> dict[str, str]:
    """This environment with the tests directory (reward and engine helpers) importable."""
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}


def torchrun(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2 ARGS``, output captured."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *args]
    return subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=timeout)


def write_run_config(tiny_world: Path, path: Path, run_dir: Path, *extra: str) -> Path:
    """A small 2-process training config; extra lines (key: value) override the defaults."""
    path.write_text(
        "\n".join(
            [
                f"model_name_or_path: {tiny_world / 'model'}",
                f"train_file: {tiny_world / 'data/train.jsonl'}",
                f"test_file: {tiny_world / 'data/test.jsonl'}",
                f"output_dir: {run_dir}",
                "reward: parity_reward:even_code_point_sum",
                "prompt_template: plain",
                "prompts_per_iteration: 5",
                "num_generations: 4",
                "stage1_samples: 2",
                "max_completion_length: 12",
                "mini_batch_size: 7",
                "micro_batch_size: 3",
                "eval_samples: 2",
                "learning_rate: 1.0e-3",
                *extra,
            ]
        )
    )
    return path
