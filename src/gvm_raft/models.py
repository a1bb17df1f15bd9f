"""Loading a Hugging Face causal LM and its tokenizer, with errors that name the setting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from gvm_raft.errors import ModelLoadError


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' own bars off (loading weights, writing shards): a run's console is one
    line per iteration, and a checkpoint takes well under a second to write."""
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


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


def gguf_file(path: str | Path, setting: str = "model_name_or_path") -> tuple[Path, str] | None:
    """(directory, file name) when path is a GGUF file, or a directory holding one GGUF file
    and no config.json (as a llama.cpp model's package does); None otherwise."""
    where = Path(path)
    if where.suffix == ".gguf" and where.is_file():
        return where.parent, where.name
    if where.is_dir() and not (where / "config.json").exists():
        found = sorted(p.name for p in where.glob("*.gguf"))
        if len(found) > 1:
            raise ModelLoadError(
                f"{setting}={path}: the directory holds several GGUF files ({', '.join(found)}): "
                f"point {setting} at one of them"
            )
        if found:
            return where, found[0]
    return None


def load_tokenizer(
    path: str | Path, setting: str = "model_name_or_path"
) -> PreTrainedTokenizerBase:
    """The tokenizer at path (a directory, a hub name or a GGUF file), with pad = eos when it
    has no pad token."""
    gguf = gguf_file(path, setting)
    try:
        if gguf is not None:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf[0]), gguf_file=gguf[1])
        else:
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
    """The causal LM at path (a model directory, a hub name, a GGUF file: dequantised into a
    plain model, or a LoRA adapter's directory: then merged into its base), in eval mode."""
    if (Path(path) / ADAPTER_CONFIG).exists():
        return load_adapted_lm(path, dtype, attn_implementation)
    kernel = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    gguf = gguf_file(path, setting)
    try:
        with no_progress_bars():
            if gguf is not None:
                return _plain_from_gguf(*gguf, dtype, kernel).eval()
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kernel)
    except (OSError, ValueError, ImportError, SafetensorError) as err:
        if attn_implementation is not None and attn_implementation in str(err):
            raise ModelLoadError(
                f"attn_implementation={attn_implementation}: {err}; choose another kernel or "
                "unset attn_implementation"
            ) from None
        raise _explain(path, "causal LM", setting, err) from None
    return model.eval()


def _plain_from_gguf(
    directory: Path, name: str, dtype: torch.dtype, kernel: dict[str, str]
) -> PreTrainedModel:
    """The GGUF file's model dequantised (transformers reads GGUF with the gguf package) and
    copied into a plain model of its architecture: one that save_pretrained, LoRA and the
    optimizer treat as any other (transformers refuses to save a model loaded from GGUF)."""
    loaded = AutoModelForCausalLM.from_pretrained(
        str(directory), gguf_file=name, dtype=dtype, **kernel
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype, **kernel)
    plain.config._name_or_path = str(directory / name)  # what a LoRA adapter records as its base
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    return plain


def write_plain_model(path: str | Path, out: str | Path) -> Path:
    """Write the model and tokenizer at path (e.g. a GGUF file) as a plain Hugging Face
    directory (config.json, safetensors, tokenizer files): what vLLM and other tools load."""
    model, tokenizer = load_causal_lm(path), load_tokenizer(path)
    with no_progress_bars():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Path(out)


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


ADAPTER_CONFIG = "adapter_config.json"


def lora_config(r: int, alpha: int, dropout: float, target_modules: Sequence[str] | None) -> Any:
    """A peft LoraConfig for a causal LM (the YAML keys use_peft, lora_*; TRL's names)."""
    from peft import LoraConfig

    targets = list(target_modules) if target_modules else None
    if targets == ["all-linear"]:
        targets = "all-linear"
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM"
    )


def with_adapter(model: PreTrainedModel, config: Any, directory: Path | None = None) -> Any:
    """The model with a trainable LoRA adapter: a new one from ``config``, or the one saved in
    ``directory`` (a checkpoint), in eval mode. Only the adapter's parameters require
    gradients."""
    from peft import PeftModel, get_peft_model

    try:
        if directory is not None:
            adapted = PeftModel.from_pretrained(model, str(directory), is_trainable=True)
        else:
            adapted = get_peft_model(model, config)
    except ValueError as err:
        raise ModelLoadError(f"use_peft=true: {err}; set lora_target_modules") from None
    return adapted.eval()  # as load_causal_lm: the M-step switches dropout on for itself


def is_adapter(model: torch.nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


def merged_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The base model's state dict with a LoRA adapter merged in (W + B A alpha / r), named as
    the base model names its weights: what an inference engine without the adapter loads."""
    if not is_adapter(model):
        return dict(model.state_dict())
    model.merge_adapter()
    try:
        weights = {}
        for name, tensor in model.get_base_model().state_dict().items():
            if "lora_" in name:
                continue
            weights[name.replace(".base_layer.", ".")] = tensor.detach().clone()
        return weights
    finally:
        model.unmerge_adapter()


def load_adapted_lm(
    path: str | Path, dtype: torch.dtype = torch.float32, attn_implementation: str | None = None
) -> torch.nn.Module:
    """A checkpoint's LoRA adapter on its base model (adapter_config.json names the base),
    merged into plain weights for evaluation."""
    import json

    from peft import PeftModel

    base_path = json.loads((Path(path) / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    base = load_causal_lm(
        base_path, "the adapter's base_model_name_or_path", dtype, attn_implementation
    )
    return PeftModel.from_pretrained(base, str(path)).merge_and_unload().eval()
