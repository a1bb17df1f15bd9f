"""Batched per-sample gradient norms against the one-sample-at-a-time autograd loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gvm_raft.estep import ScoredSample, prompt_statistics
from gvm_raft.gradnorm import _Use, group_parameters, per_sample_grad_norms, uses_ghost_norm
from gvm_raft.logprobs import collate, token_log_probs
from gvm_raft.rollout.base import Sample
from gvm_raft.tasks.tiny_model import TinyModelConfig, build_tiny_model

WIDTHS = {"wide": (32, 48), "narrow": (8, 12)}  # wide: ghost norms for Linear; narrow: dense


def make_model(tied: bool, width: str = "wide"):
    hidden, intermediate = WIDTHS[width]
    config = TinyModelConfig(
        hidden_size=hidden,
        num_layers=2,
        num_heads=2,
        intermediate_size=intermediate,
        tie_word_embeddings=tied,
    )
    model = build_tiny_model(40, config, seed=1)
    return model.double()


def make_batch(seed: int = 0):
    """Left-padded prompt + response rows of different lengths, and their response masks."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for prompt_len, response_len in [(3, 5), (6, 2), (2, 9), (4, 4), (5, 1)]:
        ids = torch.randint(4, 40, (prompt_len + response_len,), generator=gen).tolist()
        rows.append((ids, prompt_len))
    batch = collate(rows, pad_id=0)
    return batch["input_ids"], batch["attention_mask"], batch["completion_mask"]


def loop_norms(model, input_ids, attention_mask, mask, group):
    params = group_parameters(model, group)
    norms = []
    for s in range(input_ids.shape[0]):
        keep = attention_mask[s].bool()
        ids, att = input_ids[s : s + 1, keep], attention_mask[s : s + 1, keep]
        log_probs = token_log_probs(model, ids, att)
        loss = (log_probs * mask[s : s + 1, keep[:-1] & keep[1:]]).sum()
        grads = torch.autograd.grad(loss, params)
        norms.append(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
    return torch.stack(norms)


@pytest.mark.parametrize("width", ["wide", "narrow"])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("group", ["embedding", "lm_head", "all"])
def test_batched_norms_equal_the_per_sample_loop(tied, group, width):
    model = make_model(tied, width)
    input_ids, attention_mask, mask = make_batch()
    expected = loop_norms(model, input_ids, attention_mask, mask, group)
    got = per_sample_grad_norms(model, input_ids, attention_mask, mask, group, micro_batch_size=2)
    assert (expected > 0).all()
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=0)


def test_tied_embedding_includes_the_output_projection():
    model = make_model(tied=True)
    input_ids, attention_mask, mask = make_batch(1)
    embedding = per_sample_grad_norms(model, input_ids, attention_mask, mask, "embedding")
    lm_head = per_sample_grad_norms(model, input_ids, attention_mask, mask, "lm_head")
    torch.testing.assert_close(embedding, lm_head)


def test_no_parameter_gradients_are_left_behind():
    model = make_model(tied=False)
    per_sample_grad_norms(model, *make_batch(), "all")
    assert all(p.grad is None for p in model.parameters())


def test_unknown_group_is_rejected():
    with pytest.raises(ValueError, match="parameter group must be one of"):
        group_parameters(make_model(tied=False), "attention")


def test_ghost_norm_is_chosen_where_it_is_cheaper():
    up = torch.nn.Linear(32, 48)
    short, long = torch.zeros(2, 10, 32), torch.zeros(2, 30, 32)
    assert uses_ghost_norm(_Use(up, short, up(short)), "weight")  # 10 * 80 < 32 * 48
    assert not uses_ghost_norm(_Use(up, long, up(long)), "weight")  # 30 * 80 > 32 * 48
    assert not uses_ghost_norm(_Use(up, short, up(short)), "bias")


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_prompt_statistics_average_each_prompts_accepted_norms(reduction):
    """G_i of the summed or token-averaged log-likelihood, against autograd on each sample; with
    samples="all", GRPO's sqrt((1 - p) G_acc^2 + p G_rej^2) of the two kinds' means."""
    model = make_model(tied=False)
    gen = torch.Generator().manual_seed(2)

    def scored(prompt: int, length: int, accepted: bool) -> ScoredSample:
        tokens = torch.randint(4, 40, (length,), generator=gen).tolist()
        sample = Sample(prompt, [5, 6, 7], tokens, "", [0.0] * length, "stop")
        return ScoredSample(prompt, sample, float(accepted), accepted)

    groups = [
        [scored(0, 3, True), scored(0, 7, True), scored(0, 4, False)],
        [scored(1, 5, False)],
        [scored(2, 9, True)],
    ]
    accepted, sampled, norms = prompt_statistics(model, groups, 0, "all", 2, reduction)
    np.testing.assert_array_equal(accepted, [2, 0, 1])
    np.testing.assert_array_equal(sampled, [3, 1, 1])
    params = group_parameters(model, "all")

    def norm(s: ScoredSample) -> float:
        ids = torch.tensor([s.sample.prompt_ids + s.sample.token_ids])
        response = token_log_probs(model, ids, torch.ones_like(ids))[
            0, len(s.sample.prompt_ids) - 1 :
        ]
        loss = response.mean() if reduction == "mean" else response.sum()
        grads = torch.autograd.grad(loss, params)
        return torch.sqrt(sum(g.pow(2).sum() for g in grads)).item()

    by_hand = [[norm(s) for s in group] for group in groups]
    expected = [(by_hand[0][0] + by_hand[0][1]) / 2, 0.0, by_hand[2][0]]  # accepted only
    np.testing.assert_allclose(norms, expected, rtol=1e-5)
    _, _, grpo_norms = prompt_statistics(model, groups, 0, "all", 2, reduction, samples="all")
    first = math.sqrt(
        (1 / 3) * ((by_hand[0][0] + by_hand[0][1]) / 2) ** 2 + (2 / 3) * by_hand[0][2] ** 2
    )
    # prompt 1 accepted nothing, prompt 2 everything: each takes its one kind's norm
    np.testing.assert_allclose(grpo_norms, [first, by_hand[1][0], by_hand[2][0]], rtol=1e-5)
