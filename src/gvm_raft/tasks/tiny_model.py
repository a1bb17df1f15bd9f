"""The embedded policy: a small Llama-architecture causal LM built from a config (no download)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


@dataclass(frozen=True)
class TinyModelConfig:
    """About 270k parameters by default: small enough to learn the task in minutes on 2 cores."""

    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 256
    max_positions: int = 256
    tie_word_embeddings: bool = True


def build_tiny_model(vocab_size: int, config: TinyModelConfig, seed: int, **special_ids: int):
    """A randomly initialised ``LlamaForCausalLM``, seeded; special_ids: pad/bos/eos token ids."""
    llama = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=config.tie_word_embeddings,
        **special_ids,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(llama)


def build_tiny_model_for(tokenizer: PreTrainedTokenizerBase, config: TinyModelConfig, seed: int):
    """``build_tiny_model`` with the tokenizer's vocabulary size and pad/bos/eos ids."""
    return build_tiny_model(
        len(tokenizer),
        config,
        seed=seed,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
