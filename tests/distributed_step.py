"""One optimizer step of ``update_policy`` on a fixed batch, in however many processes run this
file (``python -m torch.distributed.run --nproc_per_node 2 tests/distributed_step.py WORLD
ALGORITHM MINI_BATCH MICRO_BATCH OUT [FSDP_VERSION]``), data-parallel or, given FSDP_VERSION,
sharded with FSDP. The main process saves the resulting whole parameters (as gathered for
rollouts and checkpoints) to OUT; ``step`` is also called in-process by the tests as the
single-process reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from fsdp_on_cpu import fsdp_accelerator
from torch.distributed.tensor import DTensor
from transformers import AutoModelForCausalLM, AutoTokenizer

from gvm_raft.config import TrainConfig
from gvm_raft.estep import ScoredSample
from gvm_raft.mstep import update_policy
from gvm_raft.rollout.base import Sample
from gvm_raft.sharding import full_state_dict


def fixed_batch(tokenizer, count: int = 11) -> list[ScoredSample]:
    """Samples of different lengths and rewards, three GRPO groups of uneven sizes."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        prompt = tokenizer(f"{i}+{i * 3}\n")["input_ids"]
        tokens = rng.integers(4, 40, int(rng.integers(2, 9))).tolist()
        log_probs = (-rng.uniform(0.1, 3.0, len(tokens))).tolist()
        reward = float(rng.integers(0, 2))
        sample = Sample(i % 3, tokens, "", log_probs, "stop")
        samples.append(ScoredSample(i % 3, prompt, sample, reward, reward >= 1.0, 2))
    return samples


def step(
    world_dir: Path, algorithm: str, mini: int, micro: int, fsdp_version: int = 0
) -> dict[str, torch.Tensor]:
    accelerator = (
        fsdp_accelerator(fsdp_version)(cpu=True) if fsdp_version else Accelerator(cpu=True)
    )
    tokenizer = AutoTokenizer.from_pretrained(world_dir / "model")
    model = AutoModelForCausalLM.from_pretrained(world_dir / "model", dtype=torch.float64)
    ref_model = AutoModelForCausalLM.from_pretrained(world_dir / "model", dtype=torch.float64)
    config = TrainConfig(
        algorithm=algorithm, mini_batch_size=mini, micro_batch_size=micro, learning_rate=1e-2
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    if fsdp_version:
        assert all(isinstance(p, DTensor) for p in model.parameters()), "FSDP did not shard"
    update_policy(
        config,
        accelerator,
        model,
        ref_model,
        optimizer,
        scheduler,
        fixed_batch(tokenizer),
        tokenizer.pad_token_id,
        np.random.default_rng(1),
    )
    return full_state_dict(model)


if __name__ == "__main__":
    world, algorithm, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[5])
    fsdp_version = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    params = step(world, algorithm, int(sys.argv[3]), int(sys.argv[4]), fsdp_version)
    if int(torch.distributed.get_rank()) == 0:
        torch.save(params, out)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
