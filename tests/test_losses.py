"""Losses and advantages against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from gvm_raft.losses import (
    aggregate,
    grpo_advantages,
    kl_k3,
    normaliser_of,
    policy_loss,
    raft_loss,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


MASK = t([[1, 1, 1], [1, 0, 0]])


def test_aggregate_token_and_sequence_mean():
    values = t([[1.0, 2.0, 3.0], [10.0, 99.0, 99.0]])
    assert aggregate(values, MASK, "token_mean").item() == pytest.approx((1 + 2 + 3 + 10) / 4)
    assert aggregate(values, MASK, "sequence_mean").item() == pytest.approx((2.0 + 10.0) / 2)


def test_micro_batches_with_normaliser_add_up_to_the_mini_batch():
    values = t([[1.0, 2.0, 3.0], [10.0, 99.0, 99.0]])
    for loss_type in ("token_mean", "sequence_mean"):
        whole = aggregate(values, MASK, loss_type)
        norm = normaliser_of(MASK.sum(-1).int().tolist(), loss_type)
        parts = sum(
            aggregate(values[i : i + 1], MASK[i : i + 1], loss_type, norm) for i in range(2)
        )
        assert parts.item() == pytest.approx(whole.item())


def test_raft_loss_is_nll_of_accepted_samples_only():
    log_probs = t([[-1.0, -2.0, -3.0], [-0.5, -9.0, -9.0]])
    loss = raft_loss(log_probs, MASK, torch.tensor([False, True]))
    assert loss.item() == pytest.approx(0.5)
    loss = raft_loss(log_probs, MASK, torch.tensor([True, True]))
    assert loss.item() == pytest.approx((1 + 2 + 3 + 0.5) / 4)


def test_raft_loss_weights_scale_each_samples_term_not_the_denominator():
    log_probs = t([[-1.0, -2.0, -3.0], [-0.5, -9.0, -9.0]])
    weights = t([2.0, 0.5])
    token = raft_loss(log_probs, MASK, weights, "token_mean")
    assert token.item() == pytest.approx((2 * (1 + 2 + 3) + 0.5 * 0.5) / 4)
    sequence = raft_loss(log_probs, MASK, weights, "sequence_mean")
    assert sequence.item() == pytest.approx((2 * 2.0 + 0.5 * 0.5) / 2)
    zero_weight = raft_loss(log_probs, MASK, t([0.0, 1.0]))  # out of the denominator too
    assert zero_weight.item() == pytest.approx(0.5)


def test_policy_loss_clips_on_both_sides():
    # Four one-token samples; ratios 1.5 (A=+1), 0.5 (A=-1), 1.1 (A=+1), 0.5 (A=+2).
    ratios = t([[1.5], [0.5], [1.1], [0.5]])
    old = t([[-1.0], [-1.0], [-1.0], [-1.0]])
    new = old + torch.log(ratios)
    adv = t([1.0, -1.0, 1.0, 2.0])
    mask = torch.ones_like(old)
    loss, metrics = policy_loss(new, old, adv, mask, epsilon=0.2, epsilon_high=0.28)
    # A>0, r=1.5 > 1.28: max(-1.5, -1.28) = -1.28   A<0, r=0.5 < 0.8: max(0.5, 0.8) = 0.8
    # A>0, r=1.1 inside: -1.1                       A>0, r=0.5: max(-1.0, -1.6) = -1.0
    assert loss.item() == pytest.approx((-1.28 + 0.8 - 1.1 - 1.0) / 4)
    assert metrics["clip_ratio/high_mean"] == pytest.approx(0.25)
    assert metrics["clip_ratio/low_mean"] == pytest.approx(0.25)


def test_policy_loss_gradient_vanishes_where_clipped():
    old = t([[-1.0, -1.0]])
    new = (old + torch.log(t([[1.5, 1.1]]))).requires_grad_()
    loss, _ = policy_loss(new, old, t([1.0]), torch.ones_like(old), epsilon=0.2)
    loss.backward()
    assert new.grad[0, 0].item() == 0.0  # clipped at 1.2
    assert new.grad[0, 1].item() == pytest.approx(-1.1 / 2)  # d(-r)/dlogp = -r, token mean


def test_dual_clip_caps_negative_advantages():
    old = t([[-1.0]])
    new = old + math.log(5.0)  # ratio 5 with A = -1: loss max(5, 1.2) = 5, capped at c = 3
    loss, metrics = policy_loss(new, old, t([-1.0]), torch.ones_like(old), dual_clip=3.0)
    assert loss.item() == pytest.approx(3.0)
    assert metrics["clip_ratio/dual"] == 1.0
    loss, _ = policy_loss(new, old, t([1.0]), torch.ones_like(old), dual_clip=3.0)
    assert loss.item() == pytest.approx(-1.2)  # positive advantages are unaffected


def test_rejected_samples_count_in_the_raft_plus_plus_denominator():
    # RAFT++: advantage max(r, 0): rejected samples (A = 0) add zero loss but count as tokens.
    log_probs = t([[-1.0, -1.0, -1.0], [-1.0, 0.0, 0.0]])
    loss, _ = policy_loss(log_probs, log_probs.detach(), t([0.0, 1.0]), MASK)
    assert loss.item() == pytest.approx(-1.0 / 4)


def test_kl_k3_closed_form():
    log_probs, ref = t([[0.0, -1.0]]), t([[0.0, -2.0]])
    expected = [0.0, math.exp(-1.0) + 1.0 - 1.0]
    torch.testing.assert_close(kl_k3(log_probs, ref), t([expected]))


def test_grpo_advantages_groups_of_one_two_and_five():
    rewards = [1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.5]
    groups = [0, 1, 1, 2, 2, 2, 2, 2, 3, 3]
    adv = grpo_advantages(rewards, groups, eps=0.0)
    # group 0 (size 1): advantage = reward
    assert adv[0].item() == 1.0
    # group 1: mean 0.5, unbiased std sqrt(0.5)
    assert adv[1].item() == pytest.approx(0.5 / math.sqrt(0.5))
    assert adv[2].item() == pytest.approx(-0.5 / math.sqrt(0.5))
    # group 2: rewards 1,0,0,1,1: mean 0.6, unbiased variance (3*0.16 + 2*0.36)/4 = 0.3
    std = math.sqrt(0.3)
    expected = [0.4 / std, -0.6 / std, -0.6 / std, 0.4 / std, 0.4 / std]
    torch.testing.assert_close(adv[3:8], torch.tensor(expected), rtol=1e-6, atol=1e-6)
    # group 3: zero variance -> zero advantage
    assert adv[8:].tolist() == [0.0, 0.0]
    assert grpo_advantages([1.0], [0], singleton="zero").tolist() == [0.0]


def test_grpo_advantages_reject_mismatched_input():
    with pytest.raises(ValueError, match="3 rewards but 2 group ids"):
        grpo_advantages([1.0, 0.0, 1.0], [0, 0])
