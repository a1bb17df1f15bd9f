"""The transformers rollout backend: counts, log-probs, reproducibility."""

from __future__ import annotations

import pytest
import torch

from gvm_raft.logprobs import token_log_probs
from gvm_raft.rollout import SamplingParams
from gvm_raft.rollout.hf import HFRollout

PROMPTS = ["1+2\n", "((12+7)*3)-5\n", "9*9\n", "((1-2)+3)*4\n"]


@pytest.fixture()
def rollout(tiny_model, char_tokenizer):
    return HFRollout(tiny_model, char_tokenizer, batch_size=5, progress=False)


def test_returns_exactly_the_requested_counts(rollout):
    counts = [3, 0, 7, 1]
    out = rollout.generate(PROMPTS, counts, SamplingParams(max_new_tokens=8), seed=0)
    assert [len(group) for group in out] == counts
    for i, group in enumerate(out):
        for sample in group:
            assert sample.prompt_in_call == i
            assert len(sample.token_ids) == len(sample.log_probs) <= 8
            assert sample.finish_reason in {"stop", "length"}
            if sample.finish_reason == "length":
                assert len(sample.token_ids) == 8


def test_log_probs_match_a_teacher_forced_forward_pass(rollout, tiny_model, char_tokenizer):
    temperature = 0.7
    out = rollout.generate(PROMPTS, [2, 2, 2, 2], SamplingParams(temperature, 1.0, 12), seed=1)
    for prompt, group in zip(PROMPTS, out, strict=True):
        prompt_ids = char_tokenizer(prompt)["input_ids"]
        for sample in group:
            ids = torch.tensor([prompt_ids + sample.token_ids])
            with torch.no_grad():
                forced = token_log_probs(tiny_model, ids, torch.ones_like(ids), temperature)
            expected = forced[0, len(prompt_ids) - 1 :]
            torch.testing.assert_close(torch.tensor(sample.log_probs), expected, atol=1e-4, rtol=0)


def test_same_seed_same_samples_and_global_rng_untouched(rollout):
    params = SamplingParams(max_new_tokens=10)
    state = torch.random.get_rng_state()
    first = rollout.generate(PROMPTS, [2, 1, 2, 1], params, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = rollout.generate(PROMPTS, [2, 1, 2, 1], params, seed=5)
    other = rollout.generate(PROMPTS, [2, 1, 2, 1], params, seed=6)
    tokens = lambda out: [[s.token_ids for s in group] for group in out]  # noqa: E731
    assert tokens(first) == tokens(second)
    assert tokens(first) != tokens(other)


def test_greedy_is_deterministic_across_copies(rollout):
    out = rollout.generate(PROMPTS[:2], [3, 2], SamplingParams(0.0, 1.0, 10), seed=0)
    for group in out:
        assert all(s.token_ids == group[0].token_ids for s in group)


def test_bad_counts_are_rejected(rollout):
    with pytest.raises(ValueError, match="2 prompts but 1 sample counts"):
        rollout.generate(PROMPTS[:2], [1], SamplingParams(), seed=0)
    with pytest.raises(ValueError, match="sample count of prompt 1"):
        rollout.generate(PROMPTS[:2], [1, -1], SamplingParams(), seed=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
