"""Loading a Hugging Face causal LM and its tokenizer, with errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from gvm_raft.errors import ModelLoadError


def _explain(path: str | Path, what: str, setting: str, err: Exception) -> ModelLoadError:
    where, name = Path(path), str(path)
    if where.is_dir() and not (where / "config.json").exists():
        return ModelLoadError(
            f"{setting}={path}: the directory holds no config.json; point {setting} at a "
            "directory written by save_pretrained (config.json, weights and tokenizer files)"
        )
    if not where.exists():
        if name.startswith(("/", ".", "~")) or name.count("/") > 1:
            return ModelLoadError(f"{setting}={path}: no such directory")
        return ModelLoadError(
            f"{setting}={path}: no such directory, nor a reachable hub model ({err})"
        )
    return ModelLoadError(f"{setting}={path}: cannot load a {what} ({err})")


def load_tokenizer(
    path: str | Path, setting: str = "model_name_or_path"
) -> PreTrainedTokenizerBase:
    """The tokenizer at path, with pad = eos when it has no pad token."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise _explain(path, "tokenizer", setting, err) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(
    path: str | Path,
    setting: str = "model_name_or_path",
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> torch.nn.Module:
    """The causal LM at path, in eval mode."""
    kernel = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kernel)
    except (OSError, ValueError, ImportError, SafetensorError) as err:
        if attn_implementation is not None and attn_implementation in str(err):
            raise ModelLoadError(
                f"attn_implementation={attn_implementation}: {err}; choose another kernel or "
                "unset attn_implementation"
            ) from None
        raise _explain(path, "causal LM", setting, err) from None
    return model.eval()


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute decoder-layer activations in the backward pass (non-reentrant checkpoints;
    active in training mode only, so generation and gradient norms are unaffected)."""
    if not model.supports_gradient_checkpointing:
        raise ModelLoadError(
            f"gradient_checkpointing=true: {type(model).__name__} does not support it; set "
            "gradient_checkpointing=false"
        )
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.20
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
