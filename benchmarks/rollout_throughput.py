"""Rollout throughput of the transformers backend against plain ``generate`` on the same prompts.

Requests have variable per-prompt counts n_i (a GVM allocation of 8 samples per prompt on
average). Three ways to produce them, timed in generated tokens per second (tokens up to and
including eos):
- backend: ``HFRollout.generate`` (requests flattened, sorted by prompt length, left-padded
  batches of --batch-size, log-probs returned);
- plain batched: ``model.generate`` over the flattened requests in prompt order, same batch size,
  no log-probs;
- per prompt: one ``model.generate(num_return_sequences=n_i)`` call per prompt (the naive loop).
The model is the embedded world's warm-started tiny Llama (the shipped one, or --world's;
completions stop at eos at varied lengths), or a randomly initialised one of the same shape
when --world holds no model.
Run: .venv/bin/python benchmarks/rollout_throughput.py [--world DIR] [--prompts 64]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
from transformers import GenerationConfig

from gvm_raft.allocation import allocate
from gvm_raft.models import load_causal_lm, load_tokenizer
from gvm_raft.rollout.base import SamplingParams
from gvm_raft.rollout.hf import HFRollout
from gvm_raft.tasks.arithmetic import DEFAULT_LEVELS, format_prompt, make_problem
from gvm_raft.tasks.demo_world import shipped_world
from gvm_raft.tasks.tiny_model import TinyModelConfig, build_tiny_model_for
from gvm_raft.tasks.tokenizer import build_char_tokenizer


def load(world: Path):
    if (world / "model").exists():
        return load_causal_lm(world / "model"), load_tokenizer(world / "model"), "warm-started"
    tokenizer = build_char_tokenizer()
    model = build_tiny_model_for(tokenizer, TinyModelConfig(), seed=0)
    return model.eval(), tokenizer, "random"


def generated_tokens(sequences: torch.Tensor, eos: int) -> int:
    """Tokens up to and including the first eos of each row."""
    total = 0
    for row in sequences.tolist():
        total += row.index(eos) + 1 if eos in row else len(row)
    return total


def plain_batched(model, tokenizer, prompts, counts, params, batch_size) -> int:
    requests = [p for p, n in zip(prompts, counts, strict=True) for _ in range(n)]
    config = plain_config(tokenizer, params)
    tokens = 0
    for start in range(0, len(requests), batch_size):
        enc = tokenizer(requests[start : start + batch_size], return_tensors="pt", padding=True)
        out = model.generate(**enc, generation_config=config)
        tokens += generated_tokens(out[:, enc["input_ids"].shape[1] :], tokenizer.eos_token_id)
    return tokens


def per_prompt(model, tokenizer, prompts, counts, params) -> int:
    tokens = 0
    for prompt, n in zip(prompts, counts, strict=True):
        if n == 0:
            continue
        enc = tokenizer([prompt], return_tensors="pt")
        out = model.generate(**enc, generation_config=plain_config(tokenizer, params, n))
        tokens += generated_tokens(out[:, enc["input_ids"].shape[1] :], tokenizer.eos_token_id)
    return tokens


def plain_config(tokenizer, params: SamplingParams, copies: int = 1) -> GenerationConfig:
    return GenerationConfig(
        num_return_sequences=copies,
        do_sample=True,
        temperature=params.temperature,
        top_k=0,
        max_new_tokens=params.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def timed(fn) -> tuple[float, int]:
    start = time.perf_counter()
    tokens = fn()
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=shipped_world())
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--per-prompt", type=int, default=8, help="mean samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model, tokenizer, kind = load(args.world)
    rng = np.random.default_rng(0)
    draw = random.Random(0)
    prompts = [
        format_prompt(make_problem(draw, DEFAULT_LEVELS[i % 6], i % 6 + 1)["problem"])
        for i in range(args.prompts)
    ]
    counts = allocate(
        rng.gamma(2.0, 1.0, args.prompts),
        rng.uniform(0.05, 0.95, args.prompts),
        args.per_prompt * args.prompts,
        "gvm",
    ).n_samples.tolist()
    params = SamplingParams(1.0, 1.0, args.max_new_tokens)
    print(
        f"{kind} model, {sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{args.prompts} prompts, n_i from {min(counts)} to {max(counts)} (total {sum(counts)}); "
        f"max {args.max_new_tokens} new tokens; {torch.get_num_threads()} threads"
    )
    plain_batched(model, tokenizer, prompts[:4], [2] * 4, params, 8)  # warm-up
    print("| method | batch size | seconds | tokens | tokens/s | vs plain batched |")
    print("|---|---|---|---|---|---|")
    for batch_size in args.batch_sizes:
        backend = HFRollout(model, tokenizer, batch_size, progress=False)

        def run_backend(backend=backend) -> int:
            groups = backend.generate(prompts, counts, params, seed=0)
            return sum(len(s.token_ids) for g in groups for s in g)

        torch.manual_seed(0)
        plain_s, plain_tokens = timed(
            lambda b=batch_size: plain_batched(model, tokenizer, prompts, counts, params, b)
        )
        ours_s, ours_tokens = timed(run_backend)
        for name, seconds, tokens in [
            ("plain batched generate", plain_s, plain_tokens),
            ("HFRollout (sorted, log-probs)", ours_s, ours_tokens),
        ]:
            ratio = (tokens / seconds) / (plain_tokens / plain_s)
            print(
                f"| {name} | {batch_size} | {seconds:.1f} | {tokens} | {tokens / seconds:.0f} "
                f"| {ratio:.2f}x |"
            )
    torch.manual_seed(0)
    loop_s, loop_tokens = timed(lambda: per_prompt(model, tokenizer, prompts, counts, params))
    print(
        f"| one generate per prompt | n_i | {loop_s:.1f} | {loop_tokens} "
        f"| {loop_tokens / loop_s:.0f} | - |"
    )


if __name__ == "__main__":
    main()
