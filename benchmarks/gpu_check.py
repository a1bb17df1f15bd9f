"""Helpers of gpu_check.sh: write the check's model, and summarise its runs.

python benchmarks/gpu_check.py model OUT    a randomly initialised Qwen2.5-1.5B-shaped model
                                            (bf16 safetensors) with the embedded world's
                                            character tokenizer, written to OUT
python benchmarks/gpu_check.py summary RUN_DIR [RUN_DIR ...]
                                            per run: generated samples and tokens per second
                                            (stage 1 + 2), M-step seconds, peak GPU memory
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from gvm_raft.rundir import read_metrics
from gvm_raft.tasks.tokenizer import build_char_tokenizer

# Qwen2.5-1.5B's shape (its config.json), with the character tokenizer's vocabulary.
QWEN25_15B_SHAPE = dict(
    hidden_size=1536,
    intermediate_size=8960,
    num_hidden_layers=28,
    num_attention_heads=12,
    num_key_value_heads=2,
    max_position_embeddings=4096,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def write_model(out: Path) -> None:
    tokenizer = build_char_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **QWEN25_15B_SHAPE,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"{out}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters")


def summary(run_dirs: list[Path]) -> str:
    lines = [
        "| run | samples/s | tokens/s | M-step s | peak GPU memory GiB |",
        "|---|---|---|---|---|",
    ]
    for run_dir in run_dirs:
        rows = [r for r in read_metrics(run_dir) if r.get("iteration", 0) > 0]
        if not rows:
            lines.append(f"| {run_dir.name} | failed: no iteration finished | | | |")
            continue
        row = rows[-1]
        seconds = row["time/stage1"] + row["time/stage2"]
        samples = row["samples/stage1"] + row["samples/stage2"]
        tokens = row["tokens/stage1"] + row["tokens/stage2"]
        memory = row.get("memory/peak_gib")
        lines.append(
            f"| {run_dir.name} | {samples / seconds:.1f} | {tokens / seconds:.0f} "
            f"| {row['time/update']:.1f} | {'-' if memory is None else f'{memory:.1f}'} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command == "model":
        write_model(Path(paths[0]))
    else:
        print(summary([Path(p) for p in paths]))
