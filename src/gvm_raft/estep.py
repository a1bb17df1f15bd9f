"""The E-step: sample, verify, and measure per-prompt statistics.

Rejection sampling: draw responses from the current policy, score them with the reward function,
accept those whose reward reaches the threshold. Statistics of a prompt: accepted and sampled
counts, and the mean per-sample gradient norm of its accepted responses (G_i).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from transformers import PreTrainedModel

from gvm_raft.data import PromptRow
from gvm_raft.estimators import grpo_grad_norm
from gvm_raft.gradnorm import ParameterGroup, per_sample_grad_norms
from gvm_raft.logprobs import collate, token_log_probs
from gvm_raft.rewards import RewardFn, call_reward
from gvm_raft.rollout.base import RolloutBackend, Sample, SamplingParams
from gvm_raft.stats import mean_accepted_grad_norm


@dataclass
class ScoredSample:
    """A response (with its prompt's tokens), its reward and acceptance.

    group_id: the group whose rewards GRPO normalises together: the prompt's position in the
        iteration's batch (refill prompts of dynamic filtering continue the numbering).
    """

    group_id: int
    sample: Sample
    reward: float
    accepted: bool
    weight: float = 1.0  # M-step weight of the sample (sample_weighting)


def sample_and_score(
    backend: RolloutBackend,
    rows: Sequence[PromptRow],
    prompts: Sequence[str],
    n_samples: Sequence[int],
    params: SamplingParams,
    seed: int,
    reward_fn: RewardFn,
    accept_threshold: float,
    group_ids: Sequence[int] | None = None,
) -> list[list[ScoredSample]]:
    """n_samples[i] scored samples of prompt i (grouped per prompt), carrying group_ids[i]
    (default i)."""
    group_ids = list(range(len(prompts))) if group_ids is None else list(group_ids)
    generated = backend.generate(prompts, n_samples, params, seed)
    flat = [(i, s) for i, group in enumerate(generated) for s in group]
    rewards = score(reward_fn, rows, [i for i, _ in flat], [s.text for _, s in flat])
    scored: list[list[ScoredSample]] = [[] for _ in prompts]
    for (i, sample), reward in zip(flat, rewards, strict=True):
        scored[i].append(ScoredSample(group_ids[i], sample, reward, reward >= accept_threshold))
    return scored


def score(
    reward_fn: RewardFn,
    rows: Sequence[PromptRow],
    owners: Sequence[int],
    completions: Sequence[str],
) -> list[float]:
    """Call a reward function as TRL does: ``reward_fn(prompts=, completions=, **columns)`` with
    the dataset's prompts (texts, or chat messages for a conversational dataset, whose
    completions are then [{"role": "assistant", "content": text}]), every other column as a
    keyword list, and the normalised reference answers as ``answer``. None rewards count as 0
    with a warning."""
    columns: dict[str, list] = {}
    for i in owners:
        for key, value in rows[i].columns.items():
            if key not in ("prompts", "completions"):
                columns.setdefault(key, []).append(value)
    columns["answer"] = [rows[i].answer for i in owners]
    prompts = [rows[i].problem for i in owners]
    shaped = [
        [{"role": "assistant", "content": text}] if rows[i].conversational else text
        for i, text in zip(owners, completions, strict=True)
    ]
    rewards = call_reward(reward_fn, prompts, shaped, **columns)
    missing = sum(r is None for r in rewards)
    if missing:
        warnings.warn(f"{missing} rewards were None and count as 0", stacklevel=2)
    return [0.0 if r is None else float(r) for r in rewards]


def collate_samples(samples: Sequence[ScoredSample], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded prompt + response tensors (see ``logprobs.collate``), plus the rollout
    log-probs aligned with the response mask, rewards, acceptance and group ids."""
    batch = collate(
        [(s.sample.prompt_ids + s.sample.token_ids, len(s.sample.prompt_ids)) for s in samples],
        pad_id,
    )
    mask = batch.pop("completion_mask")
    old_log_probs = torch.zeros_like(mask)
    for row, s in enumerate(samples):
        old_log_probs[row, mask[row] > 0] = torch.tensor(s.sample.log_probs, dtype=mask.dtype)
    return batch | {
        "response_mask": mask,
        "old_log_probs": old_log_probs,
        "rewards": torch.tensor([s.reward for s in samples]),
        "accepted": torch.tensor([s.accepted for s in samples]),
        "weights": torch.tensor([s.weight for s in samples]),
        "groups": torch.tensor([s.group_id for s in samples]),
    }


def sample_score_norms(
    model: PreTrainedModel,
    samples: Sequence[ScoredSample],
    pad_id: int,
    group: ParameterGroup,
    micro_batch_size: int,
    reduction: str = "sum",
) -> list[float]:
    """Each sample's gradient norm of its response log-likelihood on ``group``, summed over
    response tokens ("sum") or averaged over them ("mean": the norm divided by the length T)."""
    if not samples:
        return []
    batch = collate_samples(samples, pad_id)
    values = per_sample_grad_norms(
        model,
        batch["input_ids"],
        batch["attention_mask"],
        batch["response_mask"],
        group,
        micro_batch_size,
    ).tolist()
    if reduction == "mean":
        return [v / len(s.sample.token_ids) for v, s in zip(values, samples, strict=True)]
    return values


def prompt_statistics(
    model: PreTrainedModel,
    groups: Sequence[Sequence[ScoredSample]],
    pad_id: int,
    group: ParameterGroup,
    micro_batch_size: int,
    reduction: str = "sum",
    samples: Literal["accepted", "all"] = "accepted",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accepted, sampled, G) per prompt; G = mean of the accepted samples'
    ``sample_score_norms``. samples="all" measures the rejected samples too and returns GRPO's
    G (``estimators.grpo_grad_norm`` of the two means, p_i = accepted / sampled)."""
    accepted = np.array([sum(s.accepted for s in g) for g in groups], dtype=np.float64)
    sampled = np.array([len(g) for g in groups], dtype=np.float64)
    kept = [
        (i, s)
        for i, g in enumerate(groups)
        for s in g
        if (s.accepted or samples == "all") and s.sample.token_ids
    ]
    values = sample_score_norms(
        model, [s for _, s in kept], pad_id, group, micro_batch_size, reduction
    )
    norms: dict[bool, list[list[float]]] = {True: [[] for _ in groups], False: [[] for _ in groups]}
    for (i, s), norm in zip(kept, values, strict=True):
        norms[s.accepted][i].append(norm)
    if samples == "accepted":
        return accepted, sampled, mean_accepted_grad_norm(norms[True])
    accepted_mean, rejected_mean = (
        np.array([np.mean(n) if n else np.nan for n in norms[side]]) for side in (True, False)
    )
    rates = np.divide(accepted, sampled, out=np.zeros_like(accepted), where=sampled > 0)
    return accepted, sampled, np.nan_to_num(grpo_grad_norm(accepted_mean, rejected_mean, rates))


@torch.no_grad()
def teacher_forced_log_probs(
    model: torch.nn.Module,
    samples: Sequence[ScoredSample],
    pad_id: int,
    temperature: float,
    micro_batch_size: int,
) -> list[list[float]]:
    """log pi(token) of each sample's response tokens under ``model`` (one forward per
    micro-batch): pi_old as the RLHFlow implementation computes it, with the training model
    rather than the sampler."""
    values: list[list[float]] = []
    device = next(model.parameters()).device
    for start in range(0, len(samples), micro_batch_size):
        chunk = samples[start : start + micro_batch_size]
        batch = collate_samples(chunk, pad_id)
        log_probs = token_log_probs(
            model,
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            temperature,
        ).cpu()
        mask = batch["response_mask"] > 0
        values.extend(log_probs[row, mask[row]].tolist() for row in range(len(chunk)))
    return values


def with_old_log_probs(
    samples: Sequence[ScoredSample], log_probs: Sequence[list[float]]
) -> list[ScoredSample]:
    """The samples with their rollout log-probs (pi_old of the clipped losses) replaced."""
    return [
        replace(s, sample=replace(s.sample, log_probs=values))
        for s, values in zip(samples, log_probs, strict=True)
    ]
