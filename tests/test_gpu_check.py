"""benchmarks/gpu_check.sh, ready for a GPU: the script parses, its model has Qwen2.5-1.5B's
shape, and its summary reads the runs' metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_check import QWEN25_15B_SHAPE, summary  # noqa: E402


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks/gpu_check.sh")], check=True)


def test_the_model_has_the_shape_of_qwen25_15b_without_its_vocabulary():
    """Qwen2.5-1.5B has 1.54B parameters, 0.23B of them its 151,936-token embedding."""
    with torch.device("meta"):
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, **QWEN25_15B_SHAPE))
    assert abs(sum(p.numel() for p in model.parameters()) - (1.544e9 - 151_936 * 1536)) < 2e6


def test_the_summary_reads_rates_time_and_memory(tmp_path):
    row = {
        "iteration": 1,
        "time/stage1": 2.0,
        "time/stage2": 2.0,
        "samples/stage1": 256,
        "samples/stage2": 256,
        "tokens/stage1": 20_000,
        "tokens/stage2": 20_000,
        "time/update": 3.5,
        "memory/peak_gib": 21.3,
    }
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf/metrics.jsonl").write_text(
        json.dumps({"iteration": 0}) + "\n" + json.dumps(row)
    )
    table = summary([tmp_path / "hf", tmp_path / "vllm"]).splitlines()
    assert table[2] == "| hf | 128.0 | 10000 | 3.5 | 21.3 |"
    assert table[3].startswith("| vllm | failed")
