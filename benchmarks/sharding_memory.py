"""Peak memory per process of one M-step under each engine: one process, DDP, FSDP2, ZeRO-2,
ZeRO-3 (2 processes each, CPU over gloo, fp32, AdamW); then, in one process, the same step on
long completions without and with gradient checkpointing (peak memory and step time).

Each process builds a randomly initialised Llama of --layers x --hidden (about 3.3 M parameters
per layer at hidden 512), makes the whole-parameter replica when the engine shards, prepares,
runs one ``update_policy`` step on a fixed batch and refreshes the replica: what a training
iteration's update costs. Reported per process: peak resident memory (ru_maxrss) and its increase
over the process's resident memory just before the model is built (the library baseline).
accelerate runs FSDP and DeepSpeed only on GPUs, so the engines are applied on CPU by
tests/sharded_on_cpu.py from the shipped accelerate configs.

Expected increase per process with P parameters in fp32 (weights, gradients, two AdamW moments;
activations and engine buffers not counted): one process and DDP 16 P bytes; ZeRO-2 4 P + 12 P / 2;
FSDP2 and ZeRO-3 16 P / 2 plus the 4 P replica.
A third table compares the full M-step with a LoRA adapter's (peft, r 16 on q_proj and v_proj):
only the adapter's gradients and AdamW moments are held.
Run: .venv/bin/python benchmarks/sharding_memory.py [--layers 16] [--hidden 512] [--long-tokens 512]
     [--sections engines checkpointing lora]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("single", "ddp", "fsdp2", "zero2", "zero3")
SECTIONS = ("engines", "checkpointing", "lora")


def long_batch(tokenizer, count: int, tokens: int) -> list:
    """count accepted samples of ``tokens`` random completion tokens each."""
    import numpy as np

    from gvm_raft.estep import ScoredSample
    from gvm_raft.rollout.base import Sample

    rng = np.random.default_rng(0)
    prompt = tokenizer("12+34\n")["input_ids"]
    return [
        ScoredSample(
            i,
            Sample(i, prompt, rng.integers(4, 40, tokens).tolist(), "", [-1.0] * tokens, "stop"),
            1.0,
            True,
        )
        for i in range(count)
    ]


def worker(
    engine: str, layers: int, hidden: int, tokens: int, checkpointing: bool, lora: bool, out: Path
) -> None:
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(ROOT / "tests"))
    from distributed_step import fixed_batch
    from sharded_on_cpu import engine_accelerator

    from gvm_raft.config import GVMConfig
    from gvm_raft.models import enable_activation_checkpointing, lora_config, with_adapter
    from gvm_raft.mstep import Learner, update_policy
    from gvm_raft.sharding import (
        configure_deepspeed,
        loading_whole_models,
        make_replica,
        refresh_replica,
    )
    from gvm_raft.tasks.tokenizer import build_char_tokenizer

    accelerator = engine_accelerator("ddp" if engine == "single" else engine)(cpu=True)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    shape = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers,
        num_attention_heads=8,
        num_key_value_heads=8,
        pad_token_id=tokenizer.pad_token_id,
    )
    with loading_whole_models(accelerator):
        model = LlamaForCausalLM(shape)
    parameters = sum(p.numel() for p in model.parameters())
    if checkpointing:
        enable_activation_checkpointing(model)
    if lora:  # the default adapter: r 16, alpha 32 on q_proj and v_proj
        model = with_adapter(model, lora_config(16, 32, 0.0, None))
    config = GVMConfig(algorithm="raft++", mini_batch_size=16, micro_batch_size=4, beta=0.0)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    configure_deepspeed(accelerator, config.micro_batch_size, config.max_grad_norm)
    replica = make_replica(accelerator, model)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = long_batch(tokenizer, 8, tokens) if tokens else fixed_batch(tokenizer, count=16)
    start = time.perf_counter()
    update_policy(
        config,
        Learner(accelerator, model, None, optimizer, scheduler, tokenizer.pad_token_id),
        batch,
        np.random.default_rng(0),
    )
    seconds = time.perf_counter() - start
    if replica is not None:
        refresh_replica(model, replica)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row = {
        "engine": engine,
        "rank": accelerator.process_index,
        "parameters": parameters,
        "trained": sum(p.numel() for p in trained),
        "peak_mib": peak / 1024,
        "increase_mib": (peak - baseline) / 1024,
        "seconds": seconds,
    }
    (out / f"rank-{accelerator.process_index}.json").write_text(json.dumps(row))


def measure(
    engine: str,
    layers: int,
    hidden: int,
    tokens: int = 0,
    checkpointing: bool = False,
    lora: bool = False,
) -> list[dict]:
    out = Path(tempfile.mkdtemp(prefix=f"memory-{engine}-"))
    args = [__file__, "--worker", engine, "--layers", str(layers), "--hidden", str(hidden)]
    args += ["--out", str(out), "--tokens", str(tokens)]
    args += ["--gradient-checkpointing"] if checkpointing else []
    args += ["--lora"] if lora else []
    processes = "1" if engine == "single" else "2"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", processes]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), *sys.path])}
    done = subprocess.run(command + args, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(path.read_text()) for path in sorted(out.glob("rank-*.json"))]
    shutil.rmtree(out)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--long-tokens", type=int, default=512)
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--gradient-checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lora", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="engines, gradient checkpointing, full vs LoRA M-step",
    )
    args = parser.parse_args()
    if args.worker:
        worker(
            args.worker,
            args.layers,
            args.hidden,
            args.tokens,
            args.gradient_checkpointing,
            args.lora,
            args.out,
        )
        return
    if "engines" in args.sections:
        engines_table(args.layers, args.hidden)
    if "checkpointing" in args.sections:
        checkpointing_table(args.layers, args.hidden, args.long_tokens)
    if "lora" in args.sections:
        lora_table(args.layers, args.hidden, args.long_tokens)


def engines_table(layers: int, hidden: int) -> None:
    results = {engine: measure(engine, layers, hidden) for engine in ENGINES}
    parameters = results["single"][0]["parameters"]
    mib = parameters * 4 / 2**20
    print(f"model: {parameters / 1e6:.1f} M parameters ({mib:.0f} MiB in fp32); 2 processes")
    print("| engine | peak MiB per process | increase over baseline | expected increase |")
    print("|---|---|---|---|")
    expected = {  # in copies of the fp32 weights: weights, gradients, two AdamW moments
        "single": 4 * mib,
        "ddp": 4 * mib,
        "zero2": mib + 3 * mib / 2,
        "fsdp2": 4 * mib / 2 + mib,
        "zero3": 4 * mib / 2 + mib,
    }
    for engine, rows in results.items():
        peaks = " / ".join(f"{r['peak_mib']:.0f}" for r in rows)
        increases = " / ".join(f"{r['increase_mib']:.0f}" for r in rows)
        print(f"| {engine} | {peaks} | {increases} | {expected[engine]:.0f} |")


def checkpointing_table(layers: int, hidden: int, tokens: int) -> None:
    print(f"\none process, 8 completions of {tokens} tokens, micro-batches of 4:")
    print("| gradient checkpointing | increase over baseline (MiB) | M-step seconds |")
    print("|---|---|---|")
    for checkpointing in (False, True):
        row = measure("single", layers, hidden, tokens, checkpointing)[0]
        print(
            f"| {'on' if checkpointing else 'off'} | {row['increase_mib']:.0f} | "
            f"{row['seconds']:.1f} |"
        )


def lora_table(layers: int, hidden: int, tokens: int) -> None:
    print("\none process: full model against LoRA, on 16 short completions and on 8 of")
    print(f"{tokens} tokens (where activations dominate)")
    print("| M-step | completions | trained parameters | increase over baseline (MiB) | seconds |")
    print("|---|---|---|---|---|")
    for length in (0, tokens):
        for lora in (False, True):
            row = measure("single", layers, hidden, length, lora=lora)[0]
            print(
                f"| {'LoRA r 16 (q_proj, v_proj)' if lora else 'full'} | "
                f"{'16 short' if length == 0 else f'8 x {length}'} | {row['trained']:,} | "
                f"{row['increase_mib']:.0f} | {row['seconds']:.1f} |"
            )


if __name__ == "__main__":
    main()
