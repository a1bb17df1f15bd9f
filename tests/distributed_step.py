"""One optimizer step of ``update_policy`` on a fixed batch, in however many processes run this
file (``python -m torch.distributed.run --nproc_per_node 2 tests/distributed_step.py WORLD
ALGORITHM MINI_BATCH MICRO_BATCH OUT [ENGINE]``) on ENGINE (ddp, fsdp2, zero2, zero3; see
sharded_on_cpu.py). The main process saves the resulting whole parameters (as gathered for
rollouts and checkpoints) to OUT; ``step`` is also called in-process by the tests as the
single-process reference."""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import numpy as np
import torch
from sharded_on_cpu import engine_accelerator
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM, AutoTokenizer

from gvm_raft.config import GVMConfig
from gvm_raft.estep import ScoredSample
from gvm_raft.mstep import Learner, update_policy
from gvm_raft.rollout.base import Sample
from gvm_raft.sharding import configure_deepspeed, full_state_dict, loading_whole_models


def fixed_batch(tokenizer, count: int = 11) -> list[ScoredSample]:
    """Samples of different lengths and rewards, three GRPO groups of uneven sizes."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        prompt = tokenizer(f"{i}+{i * 3}\n")["input_ids"]
        tokens = rng.integers(4, 40, int(rng.integers(2, 9))).tolist()
        log_probs = (-rng.uniform(0.1, 3.0, len(tokens))).tolist()
        reward = float(rng.integers(0, 2))
        sample = Sample(i % 3, prompt, tokens, "", log_probs, "stop")
        samples.append(ScoredSample(i % 3, sample, reward, reward >= 1.0))
    return samples


def precision(engine: str) -> torch.dtype:
    """float64, except under DeepSpeed, which takes fp16, bf16 or fp32 models only."""
    return torch.float32 if engine.startswith("zero") else torch.float64


def step(
    world_dir: Path,
    algorithm: str,
    mini: int,
    micro: int,
    engine: str = "ddp",
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    accelerator = engine_accelerator(engine)(cpu=True)
    tokenizer = AutoTokenizer.from_pretrained(world_dir / "model")
    dtype = dtype or precision(engine)
    with loading_whole_models(accelerator):
        model = AutoModelForCausalLM.from_pretrained(world_dir / "model", dtype=dtype)
        ref_model = AutoModelForCausalLM.from_pretrained(world_dir / "model", dtype=dtype)
    config = GVMConfig(
        algorithm=algorithm, mini_batch_size=mini, micro_batch_size=micro, learning_rate=1e-2
    )
    # eps 1e-4, not 1e-8: Adam's first step is lr * g / (|g| + eps), which turns the fp32
    # rounding of a gradient that nearly cancels (summed in another order by 2 processes)
    # into an update error up to lr; with eps 1e-4 the steps agree to the parameters' ulp
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, eps=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    configure_deepspeed(accelerator, config.micro_batch_size, config.max_grad_norm)
    model, optimizer = accelerator.prepare(model, optimizer)
    if engine == "fsdp2":
        assert all(isinstance(p, DTensor) for p in model.parameters()), "FSDP did not shard"
    if engine.startswith("zero"):
        assert model.zero_optimization_stage() == int(engine[-1])
    if engine == "zero3":
        assert all(p.numel() == 0 for p in model.parameters()), "ZeRO-3 did not shard"
    update_policy(
        config,
        Learner(accelerator, model, ref_model, optimizer, scheduler, tokenizer.pad_token_id),
        fixed_batch(tokenizer),
        np.random.default_rng(1),
    )
    return full_state_dict(model)


if __name__ == "__main__":
    world, algorithm, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[5])
    engine = sys.argv[6] if len(sys.argv) > 6 else "ddp"
    params = step(world, algorithm, int(sys.argv[3]), int(sys.argv[4]), engine)
    if int(torch.distributed.get_rank()) == 0:
        torch.save(params, out)
    del params
    gc.collect()
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    os._exit(0)  # no interpreter finalization under Gloo, as gvm_raft.cli._leave_process_group
