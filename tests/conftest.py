"""Shared fixtures: a tiny randomly initialised model and its character tokenizer."""

from __future__ import annotations

import pytest

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
