"""The M-step: optimizer steps on one iteration's samples with RAFT, RAFT++ or GRPO.

The batch is shuffled and cut into mini-batches of ``mini_batch_size`` samples (one optimizer
step each, the same number for every allocation arm; RAFT splits its accepted samples into as
many), processed in micro-batches whose losses are normalised by the whole mini-batch, so
accumulation gives the mini-batch's gradient.
Advantages: RAFT++ max(r, 0) (accepted samples 1, rejected 0), GRPO group-normalised rewards,
each times the sample's estimator weight (1, or its sample_weighting weight: estimators.py).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator

from gvm_raft.config import GVMConfig
from gvm_raft.distributed import sum_across
from gvm_raft.estep import ScoredSample, collate_samples
from gvm_raft.logprobs import token_log_probs
from gvm_raft.losses import aggregate, grpo_advantages, kl_k3, normaliser_of, policy_loss, raft_loss
from gvm_raft.models import is_adapter
from gvm_raft.sharding import backward, micro_batch, optimizer_step


def advantages_for(config: GVMConfig, samples: Sequence[ScoredSample]) -> torch.Tensor:
    rewards = torch.tensor([s.reward for s in samples])
    weights = torch.tensor([s.weight for s in samples])
    if config.algorithm == "grpo":
        groups = [s.group_id for s in samples]
        return grpo_advantages(rewards, groups, singleton=config.singleton_advantage) * weights
    return rewards.clamp(min=0.0) * weights


@dataclass
class Learner:
    """What an M-step updates: the model as the engine prepared it, its KL model (None
    without a KL term), the optimizer and learning-rate schedule, and the pad token id."""

    accelerator: Accelerator
    model: torch.nn.Module
    ref_model: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    pad_id: int


def update_policy(
    config: GVMConfig,
    learner: Learner,
    samples: Sequence[ScoredSample],
    rng: np.random.Generator,
    dropout_seed: int = 0,
) -> dict[str, float]:
    """Run ppo_epochs passes of mini-batch steps (``rng`` shuffles the batch; dropout draws
    from ``dropout_seed``, the global torch generator left as it was); returns mean metrics and
    the step count.

    Every process holds the same samples and the same order; each takes every world-th sample
    of a mini-batch, and its loss is scaled so that the data-parallel average of the processes'
    gradients equals the whole mini-batch's gradient.
    """
    steps_per_epoch = math.ceil(len(samples) / config.mini_batch_size)
    if config.algorithm == "raft":
        samples = [s for s in samples if s.accepted]
    samples = [s for s in samples if s.sample.token_ids]
    if not samples:
        return {"optimizer_steps": 0}
    advantages = advantages_for(config, samples)
    accelerator, model = learner.accelerator, learner.model
    rank, world = accelerator.process_index, accelerator.num_processes
    sums: dict[str, float] = defaultdict(float)
    grad_norms: list[float] = []
    devices = [accelerator.device] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(dropout_seed)
        model.train()
        for _ in range(config.ppo_epochs):
            for chosen in mini_batches(rng.permutation(len(samples)), config, steps_per_epoch):
                mine = chosen[rank::world]
                lengths = [len(samples[i].sample.token_ids) for i in chosen]
                share = math.ceil(len(chosen) / world)
                metrics, grad_norm = _step(
                    config,
                    learner,
                    MiniBatch(
                        samples=[samples[i] for i in mine],
                        advantages=advantages[mine],
                        normaliser=normaliser_of(lengths, config.loss_type),
                        tokens=sum(lengths),
                        micro_batches=math.ceil(share / config.micro_batch_size),
                        filler=samples[chosen[0]],
                    ),
                )
                learner.scheduler.step()
                grad_norms.append(grad_norm)
                for key, value in metrics.items():
                    sums[key] += value
        model.eval()
    steps = len(grad_norms)
    totals = sum_across(accelerator, dict(sums))
    return {key: value / steps for key, value in totals.items()} | {
        "grad_norm": float(np.mean(grad_norms)),
        "optimizer_steps": steps,
    }


def mini_batches(order: np.ndarray, config: GVMConfig, steps: int) -> list[list[int]]:
    """One epoch's mini-batches (sample indices, one optimizer step each). RAFT++ and GRPO cut
    the shuffled batch into mini_batch_size pieces. RAFT trains on the accepted samples only,
    and splits them into as many nearly equal pieces as the whole batch would give (``steps``,
    fewer only when fewer samples were accepted), so that an arm's step count does not follow
    its acceptance rate: every allocation arm takes the same optimizer steps."""
    if config.algorithm == "raft":
        return [part.tolist() for part in np.array_split(order, min(steps, len(order)))]
    size = config.mini_batch_size
    return [order[start : start + size].tolist() for start in range(0, len(order), size)]


@dataclass
class MiniBatch:
    """This process's share of one optimizer step's samples.

    normaliser, tokens: of the whole mini-batch (all processes); micro_batches: the same count
    on every process (a process whose share runs out backpropagates ``filler`` with weight 0,
    so every process takes part in every gradient all-reduce).
    """

    samples: list[ScoredSample]
    advantages: torch.Tensor
    normaliser: float
    tokens: int
    micro_batches: int
    filler: ScoredSample


@torch.no_grad()
def reference_log_probs(
    learner: Learner, ids: torch.Tensor, att: torch.Tensor, temperature: float
) -> torch.Tensor:
    """log pi_ref of the tokens: the KL model's, or, for a LoRA policy without one,
    the policy's with its adapter switched off (the base model, no second copy held)."""
    if learner.ref_model is not None:
        return token_log_probs(learner.ref_model, ids, att, temperature)
    policy = learner.accelerator.unwrap_model(learner.model)
    if not is_adapter(policy):
        raise RuntimeError("a KL term needs a KL model or a LoRA policy")
    with policy.disable_adapter():
        return token_log_probs(learner.model, ids, att, temperature)


def _step(config: GVMConfig, learner: Learner, batch: MiniBatch) -> tuple[dict[str, float], float]:
    """Accumulate the mini-batch's gradient over micro-batches, clip, and step.

    Each process's loss is multiplied by the process count: data-parallel training averages
    gradients over processes, and the losses are already normalised by the whole mini-batch.
    """
    accelerator, model = learner.accelerator, learner.model
    device = accelerator.device
    size = config.micro_batch_size
    metrics: dict[str, float] = defaultdict(float)
    for index in range(batch.micro_batches):
        chunk = batch.samples[index * size : (index + 1) * size]
        weight = float(accelerator.num_processes) if chunk else 0.0
        adv = batch.advantages[index * size : (index + 1) * size] if chunk else torch.zeros(1)
        chunk = chunk or [batch.filler]
        micro = {k: v.to(device) for k, v in collate_samples(chunk, learner.pad_id).items()}
        ids, att, mask = micro["input_ids"], micro["attention_mask"], micro["response_mask"]
        last = index == batch.micro_batches - 1
        with micro_batch(accelerator, model, last):
            log_probs = token_log_probs(model, ids, att, config.temperature)
            if config.algorithm == "raft":
                weights = micro["accepted"] * micro["weights"]
                loss = raft_loss(log_probs, mask, weights, config.loss_type, batch.normaliser)
                parts: dict[str, float] = {}
            else:
                loss, parts = policy_loss(
                    log_probs,
                    micro["old_log_probs"],
                    adv.to(device),
                    mask,
                    config.epsilon,
                    config.epsilon_high,
                    config.dual_clip,
                    config.loss_type,
                    batch.normaliser,
                )
            if config.algorithm != "raft" and config.beta > 0:
                ref_log_probs = reference_log_probs(learner, ids, att, config.temperature)
                kl = aggregate(
                    kl_k3(log_probs, ref_log_probs), mask, config.loss_type, batch.normaliser
                )
                loss = loss + config.beta * kl
                if weight:
                    metrics["kl"] += kl.item()
            backward(accelerator, model, loss * weight)
        if not weight:
            continue
        share = mask.sum().item() / max(batch.tokens, 1)
        metrics["loss"] += loss.item()
        for key, value in parts.items():
            metrics[key] += value * share
        with torch.no_grad():
            entropy_proxy = -(log_probs * mask).sum() / mask.sum().clamp(min=1.0)
        metrics["neg_log_prob"] += entropy_proxy.item() * share
    return metrics, optimizer_step(accelerator, model, learner.optimizer, config.max_grad_norm)
