"""The M-step: optimizer steps on one iteration's samples with RAFT, RAFT++ or GRPO.

The batch is shuffled and cut into mini-batches of ``mini_batch_size`` samples (one optimizer
step each, the same for every allocation arm), processed in micro-batches whose losses are
normalised by the whole mini-batch, so accumulation gives the mini-batch's gradient.
Advantages: RAFT++ max(r, 0) (accepted samples 1, rejected 0); GRPO group-normalised rewards.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
from accelerate import Accelerator

from gvm_raft.config import TrainConfig
from gvm_raft.estep import ScoredSample, collate_samples
from gvm_raft.logprobs import token_log_probs
from gvm_raft.losses import aggregate, grpo_advantages, kl_k3, normaliser_of, policy_loss, raft_loss


def advantages_for(config: TrainConfig, samples: Sequence[ScoredSample]) -> torch.Tensor:
    rewards = torch.tensor([s.reward for s in samples])
    if config.algorithm == "grpo":
        groups = [s.prompt_position for s in samples]
        return grpo_advantages(rewards, groups, singleton=config.singleton_advantage)
    return rewards.clamp(min=0.0)


def update_policy(
    config: TrainConfig,
    accelerator: Accelerator,
    model: torch.nn.Module,
    ref_model: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    samples: Sequence[ScoredSample],
    pad_id: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Run ppo_epochs passes of mini-batch steps; returns mean metrics and the step count."""
    if config.algorithm == "raft":
        samples = [s for s in samples if s.accepted]
    samples = [s for s in samples if s.sample.token_ids]
    if not samples:
        return {"optimizer_steps": 0}
    advantages = advantages_for(config, samples)
    sums: dict[str, float] = defaultdict(float)
    steps = 0
    model.train()
    for _ in range(config.ppo_epochs):
        order = rng.permutation(len(samples))
        for start in range(0, len(samples), config.mini_batch_size):
            chosen = order[start : start + config.mini_batch_size].tolist()
            metrics = _step(
                config,
                accelerator,
                model,
                ref_model,
                optimizer,
                [samples[i] for i in chosen],
                advantages[chosen],
                pad_id,
            )
            scheduler.step()
            steps += 1
            for key, value in metrics.items():
                sums[key] += value
    model.eval()
    return {key: value / steps for key, value in sums.items()} | {"optimizer_steps": steps}


def _step(
    config: TrainConfig,
    accelerator: Accelerator,
    model: torch.nn.Module,
    ref_model: torch.nn.Module | None,
    optimizer: torch.optim.Optimizer,
    samples: list[ScoredSample],
    advantages: torch.Tensor,
    pad_id: int,
) -> dict[str, float]:
    device = accelerator.device
    lengths = [len(s.sample.token_ids) for s in samples]
    normaliser = normaliser_of(lengths, config.loss_type)
    metrics: dict[str, float] = defaultdict(float)
    for start in range(0, len(samples), config.micro_batch_size):
        micro = collate_samples(samples[start : start + config.micro_batch_size], pad_id)
        micro = {k: v.to(device) for k, v in micro.items()}
        adv = advantages[start : start + config.micro_batch_size].to(device)
        ids, att, mask = micro["input_ids"], micro["attention_mask"], micro["response_mask"]
        log_probs = token_log_probs(model, ids, att, config.temperature)
        if config.algorithm == "raft":
            loss = raft_loss(log_probs, mask, micro["accepted"], config.loss_type, normaliser)
            parts: dict[str, float] = {}
        else:
            loss, parts = policy_loss(
                log_probs,
                micro["old_log_probs"],
                adv,
                mask,
                config.epsilon,
                config.epsilon_high,
                config.dual_clip,
                config.loss_type,
                normaliser,
            )
        if ref_model is not None and config.beta > 0:
            with torch.no_grad():
                ref_log_probs = token_log_probs(ref_model, ids, att, config.temperature)
            kl = aggregate(kl_k3(log_probs, ref_log_probs), mask, config.loss_type, normaliser)
            loss = loss + config.beta * kl
            metrics["kl"] += kl.item()
        accelerator.backward(loss)
        share = mask.sum().item() / max(sum(lengths), 1)
        metrics["loss"] += loss.item()
        for key, value in parts.items():
            metrics[key] += value * share
        with torch.no_grad():
            entropy_proxy = -(log_probs * mask).sum() / mask.sum().clamp(min=1.0)
        metrics["neg_log_prob"] += entropy_proxy.item() * share
    metrics["grad_norm"] = float(
        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return metrics
