"""Shared fixtures: a tiny randomly initialised model, its character tokenizer, and a tiny
demo world (data + warm-started model on disk) built once per session."""

from __future__ import annotations

import pytest

from gvm_raft.tasks.demo_world import DemoWorldConfig, prepare_demo_world
from gvm_raft.tasks.tiny_model import TinyModelConfig, build_tiny_model
from gvm_raft.tasks.tokenizer import build_char_tokenizer


@pytest.fixture(scope="session")
def char_tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(char_tokenizer):
    config = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    model = build_tiny_model(
        len(char_tokenizer),
        config,
        seed=0,
        pad_token_id=char_tokenizer.pad_token_id,
        bos_token_id=char_tokenizer.bos_token_id,
        eos_token_id=char_tokenizer.eos_token_id,
    )
    return model.eval()


TINY_WORLD = DemoWorldConfig(
    seed=2,
    sft_size=300,
    train_size=16,
    test_size=8,
    model=TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
    sft_steps=5,
    sft_batch_size=16,
    probe_samples=2,
    max_new_tokens=24,
)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A demo world small enough for the unit tests: 16 train and 8 test prompts."""
    path = tmp_path_factory.mktemp("world") / "w"
    prepare_demo_world(path, TINY_WORLD, progress=False)
    return path
