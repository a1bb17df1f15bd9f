"""Losses of RAFT, RAFT++ and GRPO, and the GRPO advantage: pure functions of tensors.

Shapes: log_probs, old_log_probs, ref_log_probs, mask are (B, T) over response tokens (mask 1
on real response tokens); advantages are (B,) per sample, broadcast over its tokens.
Aggregation ("loss_type"):
- "token_mean": sum over all tokens of the mini-batch / number of tokens of the mini-batch
  (rejected samples count in the denominator, as in the RLHFlow implementation's RAFT++; TRL's
  "dapo" loss). verl's "token-mean" differs: it takes the token mean of each micro-batch and weights
  it by the micro-batch's share of the mini-batch's samples, which equals this only when every
  micro-batch holds the same number of tokens;
- "sequence_mean": mean over samples of each sample's token mean.
Response tokens include the closing EOS token (trained, as in TRL and verl; gvm-raft's G_i
counts it too, the RLHFlow implementation's G_i leaves it out). A micro-batch of a larger
mini-batch passes ``normaliser`` (the mini-batch's token count for token_mean, its sample count for
sequence_mean) so that accumulated gradients equal the mini-batch's.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Literal

import torch

from gvm_raft.config import LossType

LOSS_TYPES: tuple[str, ...] = typing.get_args(LossType)


def aggregate(
    values: torch.Tensor,
    mask: torch.Tensor,
    loss_type: LossType = "token_mean",
    normaliser: float | None = None,
) -> torch.Tensor:
    """Reduce per-token values (B, T) to a scalar (see module docstring)."""
    mask = mask.to(values.dtype)
    if loss_type == "token_mean":
        total = (values * mask).sum()
        return total / (normaliser if normaliser is not None else mask.sum().clamp(min=1.0))
    if loss_type == "sequence_mean":
        per_sample = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        return per_sample.sum() / (normaliser if normaliser is not None else values.shape[0])
    raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}; got {loss_type!r}")


def normaliser_of(response_lengths: Sequence[int], loss_type: LossType) -> float:
    """What ``aggregate`` divides by for a whole mini-batch with these response lengths:
    its token count (at least 1) for token_mean, its sequence count for sequence_mean."""
    if loss_type == "token_mean":
        return float(max(sum(response_lengths), 1))
    return float(len(response_lengths))


def raft_loss(
    log_probs: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    loss_type: LossType = "token_mean",
    normaliser: float | None = None,
) -> torch.Tensor:
    """RAFT: negative log-likelihood of the accepted samples (supervised fine-tuning on them).

    weights: (B,) per sample, 0 for rejected samples (left out of the loss and of its
    denominator); 1 for accepted ones, or their sample_weighting weights, which scale each
    sample's term (not the denominator).
    """
    w = weights.to(log_probs.dtype).unsqueeze(-1)
    kept = mask * (w > 0).to(mask.dtype)
    return aggregate(-log_probs * w, kept, loss_type, normaliser)


def policy_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    dual_clip: float | None = None,
    loss_type: LossType = "token_mean",
    normaliser: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate: per token, with r = exp(log_probs - old_log_probs) and A the
    sample's advantage, loss = max(-A r, -A clip(r, 1 - epsilon, 1 + epsilon_high)); with
    dual_clip c > 1, tokens with A < 0 are further capped at -A c.

    Metrics: clip_ratio/low_mean (A < 0 and r < 1 - epsilon), clip_ratio/high_mean (A > 0 and
    r > 1 + epsilon_high), clip_ratio/dual (dual clip active), as fractions of response tokens.
    """
    high = epsilon if epsilon_high is None else epsilon_high
    advantage = advantages.to(log_probs.dtype).unsqueeze(-1)
    ratio = torch.exp(log_probs - old_log_probs)
    unclipped = -advantage * ratio
    clipped = -advantage * torch.clamp(ratio, 1.0 - epsilon, 1.0 + high)
    loss = torch.maximum(unclipped, clipped)
    dual_active = torch.zeros_like(loss, dtype=torch.bool)
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1; got {dual_clip}")
        cap = -advantage * dual_clip
        dual_active = (advantage < 0) & (loss > cap)
        loss = torch.where(advantage < 0, torch.minimum(loss, cap), loss)
    with torch.no_grad():
        tokens = mask.sum().clamp(min=1.0)
        metrics = {
            "clip_ratio/low_mean": float(
                ((ratio < 1 - epsilon) & (advantage < 0) & (mask > 0)).sum() / tokens
            ),
            "clip_ratio/high_mean": float(
                ((ratio > 1 + high) & (advantage > 0) & (mask > 0)).sum() / tokens
            ),
            "clip_ratio/dual": float((dual_active & (mask > 0)).sum() / tokens),
        }
    return aggregate(loss, mask, loss_type, normaliser), metrics


def kl_k3(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """Low-variance KL(pi || pi_ref) estimator per token: exp(d) - d - 1 with d = ref - log_probs,
    clamped to [-10, 10] as in verl."""
    delta = ref_log_probs - log_probs
    return torch.clamp(torch.exp(delta) - delta - 1.0, min=-10.0, max=10.0)


def grpo_advantages(
    rewards: Sequence[float] | torch.Tensor,
    group_ids: Sequence[int] | torch.Tensor,
    eps: float = 1e-6,
    singleton: Literal["reward", "zero"] = "reward",
) -> torch.Tensor:
    """(r - mean_g) / (std_g + eps) within each group g (all responses of one prompt), with the
    unbiased standard deviation; groups may differ in size. A zero-variance group gets 0.
    A group of one has no spread: "reward" uses baseline 0 and scale 1 (advantage = reward, the
    RLHFlow implementation's behaviour), "zero" gives it advantage 0."""
    if singleton not in ("reward", "zero"):
        raise ValueError(f"singleton must be 'reward' or 'zero'; got {singleton!r}")
    r = torch.as_tensor(rewards, dtype=torch.float32)
    groups = torch.as_tensor(group_ids)
    if r.shape != groups.shape:
        raise ValueError(f"got {r.numel()} rewards but {groups.numel()} group ids")
    advantages = torch.zeros_like(r)
    for g in torch.unique(groups):
        members = groups == g
        values = r[members]
        if values.numel() == 1:
            advantages[members] = values if singleton == "reward" else 0.0
        elif values.std() > 0:
            advantages[members] = (values - values.mean()) / (values.std() + eps)
    return advantages
