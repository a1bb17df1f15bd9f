"""One optimizer step of ``update_policy`` on a fixed batch, in however many processes run this
file (``python -m torch.distributed.run --nproc_per_node 2 tests/distributed_step.py WORLD
ALGORITHM MINI_BATCH MICRO_BATCH OUT``).
The main process saves the resulting parameters to OUT; ``step`` is also called in-process by
the tests as the single-process reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoTokenizer

from gvm_raft.config import TrainConfig
from gvm_raft.estep import ScoredSample
from gvm_raft.mstep import update_policy
from gvm_raft.rollout.base import Sample


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


def step(world_dir: Path, algorithm: str, mini: int, micro: int) -> dict[str, torch.Tensor]:
    accelerator = Accelerator(cpu=True)
    tokenizer = AutoTokenizer.from_pretrained(world_dir / "model")
    model = AutoModelForCausalLM.from_pretrained(world_dir / "model", dtype=torch.float64)
    ref_model = AutoModelForCausalLM.from_pretrained(world_dir / "model", dtype=torch.float64)
    config = TrainConfig(
        algorithm=algorithm, mini_batch_size=mini, micro_batch_size=micro, learning_rate=1e-2
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
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
    return {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}


if __name__ == "__main__":
    world, algorithm, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[5])
    params = step(world, algorithm, int(sys.argv[3]), int(sys.argv[4]))
    if int(torch.distributed.get_rank()) == 0:
        torch.save(params, out)
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
