"""Whole parameters of a policy that the training engine may shard (FSDP, DeepSpeed ZeRO-3),
and the engine-specific parts of a step and a checkpoint.

Rollouts, gradient norms and evaluation give each process a different amount of work, so they
cannot run on a sharded module (every forward would all-gather, and unequal forward counts
hang). When the engine shards parameters, every process keeps a full-parameter replica of the
policy for that work and refreshes it from the trained module after each update; when it does
not (one process, DDP, ZeRO-1/2), the replica is the trained module itself and costs nothing.

Optimizer state is checkpointed in full, keyed by parameter name, so a checkpoint does not
depend on the engine or the process count; DeepSpeed keeps its own optimizer, whose state is
its engine checkpoint (one file per process: resume with the same process count).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP1
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from gvm_raft.config import ConfigError
from gvm_raft.errors import NonFiniteError

FSDP_EFFICIENT_LOADING = "FSDP_CPU_RAM_EFFICIENT_LOADING"


def uses_deepspeed(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def uses_sharding_engine(accelerator: Accelerator) -> bool:
    """FSDP or DeepSpeed (any stage), as opposed to DDP or one device."""
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def shards_parameters(accelerator: Accelerator) -> bool:
    """True when no process holds the whole model: FSDP (1 or 2) or DeepSpeed ZeRO-3."""
    if uses_deepspeed(accelerator):
        return accelerator.state.deepspeed_plugin.zero_stage == 3
    return accelerator.distributed_type == DistributedType.FSDP


def check_engine_available() -> None:
    """accelerate runs FSDP and DeepSpeed only on GPUs (and similar accelerators); refuse a
    launch that asks for them on a machine without one, before accelerate fails inside."""
    if torch.cuda.is_available():
        return
    for variable, engine in (
        ("ACCELERATE_USE_FSDP", "FSDP"),
        ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed"),
    ):
        if os.environ.get(variable, "false").lower() == "true":
            raise ConfigError(
                f"the launch config asks for {engine} ({variable}=true), which accelerate runs "
                "only on GPUs, and this machine has none: launch CPU processes with torchrun "
                "(torchrun --nproc_per_node N -m gvm_raft.cli train CONFIG) or a DDP config"
            )


def configure_deepspeed(
    accelerator: Accelerator, micro_batch_size: int, max_grad_norm: float
) -> None:
    """Under DeepSpeed, fit its config to gvm-raft's step (see ``fit_deepspeed_config``)."""
    if uses_deepspeed(accelerator):
        fit_deepspeed_config(
            accelerator.state.deepspeed_plugin.deepspeed_config, micro_batch_size, max_grad_norm
        )


def fit_deepspeed_config(config: dict, micro_batch_size: int, max_grad_norm: float) -> None:
    """gvm-raft owns micro-batching (one engine step per mini-batch, accumulation boundaries
    set by the M-step), clipping, the optimizer and the schedule: set those fields in place,
    and refuse a config that brings its own optimizer or scheduler."""
    for section in ("optimizer", "scheduler"):
        if section in config:
            raise ConfigError(
                f"the DeepSpeed config sets {section!r}: remove it (gvm-raft builds its own "
                "AdamW and warm-up schedule from learning_rate, weight_decay, warmup_steps)"
            )
    config["train_micro_batch_size_per_gpu"] = micro_batch_size
    config["gradient_accumulation_steps"] = 1
    config["gradient_clipping"] = max_grad_norm
    config.pop("train_batch_size", None)


@contextlib.contextmanager
def loading_whole_models(accelerator: Accelerator) -> Iterator[None]:
    """Load models whole on every process. transformers would otherwise build them partitioned
    under ZeRO-3 (zero.Init), or empty (on the meta device) on all but each machine's first
    process under FSDP's cpu_ram_efficient_loading; the replica and the KL model must
    be whole, and ``prepare`` shards the trained model itself."""
    efficient_loading = os.environ.get(FSDP_EFFICIENT_LOADING)
    os.environ[FSDP_EFFICIENT_LOADING] = "false"
    if uses_deepspeed(accelerator):
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if efficient_loading is None:
            del os.environ[FSDP_EFFICIENT_LOADING]
        else:
            os.environ[FSDP_EFFICIENT_LOADING] = efficient_loading
        if uses_deepspeed(accelerator):
            accelerator.state.deepspeed_plugin.set_deepspeed_weakref()


def make_replica(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module | None:
    """A full-parameter copy of the not-yet-prepared model when the engine will shard it."""
    if not shards_parameters(accelerator):
        return None
    return copy.deepcopy(model).to(accelerator.device)


def whole_tensors(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, whole tensor) of every parameter and buffer of the prepared model, gathered one
    at a time, so no second whole copy of the model is ever held (a collective: every process
    must run through it). Tensors may be views of gather buffers: copy them before moving on."""
    deepspeed = sys.modules.get("deepspeed")
    if deepspeed is not None and isinstance(model, deepspeed.DeepSpeedEngine):
        params = dict(model.module.named_parameters(remove_duplicate=False))
        for name, tensor in model.module.state_dict().items():
            if name not in params:
                yield name, tensor
                continue
            with deepspeed.zero.GatheredParameters([params[name]]):
                yield name, params[name].data
    elif isinstance(model, FSDP1):
        yield from get_model_state_dict(
            model, options=StateDictOptions(full_state_dict=True)
        ).items()
    else:
        module = model.module if isinstance(model, DistributedDataParallel) else model
        for name, tensor in module.state_dict().items():
            yield name, tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the prepared model, whole, on every process (a collective)."""
    return {name: tensor.detach().clone() for name, tensor in whole_tensors(model)}


@torch.no_grad()
def refresh_replica(model: torch.nn.Module, replica: torch.nn.Module) -> None:
    """Copy the trained (sharded) model's current parameters into the replica, one tensor at a
    time (a collective)."""
    targets = replica.state_dict()
    for name, tensor in whole_tensors(model):
        targets[name].copy_(tensor)


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's whole state keyed by parameter name, on the main process (a collective);
    other processes get an empty dict."""
    return get_optimizer_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def save_engine_state(model: torch.nn.Module, directory: Path) -> None:
    """DeepSpeed: the engine's optimizer state (and its shards of the weights), one file per
    process (a collective)."""
    model.save_checkpoint(str(directory), tag="state")


def load_engine_state(model: torch.nn.Module, directory: Path, processes: int) -> None:
    """DeepSpeed: restore what ``save_engine_state`` wrote, with the same process count."""
    shards = list((directory / "state").glob("*_optim_states.pt"))
    if not shards:
        raise ConfigError(
            f"{directory} holds no DeepSpeed engine state: resume a DeepSpeed run under DeepSpeed"
        )
    if len(shards) != processes:
        raise ConfigError(
            f"the DeepSpeed state in {directory} was written by {len(shards)} processes: resume "
            f"with {len(shards)} processes (this launch has {processes})"
        )
    model.load_checkpoint(
        str(directory), tag="state", load_optimizer_states=True, load_lr_scheduler_states=False
    )


def load_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """Load a whole, name-keyed optimizer state; each process keeps its own shard of it."""
    set_optimizer_state_dict(
        model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
    )


@contextlib.contextmanager
def micro_batch(accelerator: Accelerator, model: torch.nn.Module, last: bool) -> Iterator[None]:
    """Around one micro-batch's forward and backward: gradients are synchronised across
    processes only at the mini-batch's last one (DDP/FSDP no_sync, DeepSpeed's boundary)."""
    if uses_deepspeed(accelerator):
        model.set_gradient_accumulation_boundary(last)
        yield
    elif last:
        yield
    else:
        with accelerator.no_sync(model):
            yield


def backward(accelerator: Accelerator, model: torch.nn.Module, loss: torch.Tensor) -> None:
    if uses_deepspeed(accelerator):
        model.backward(loss)
    else:
        accelerator.backward(loss)


def optimizer_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    max_grad_norm: float,
) -> float:
    """Clip the accumulated gradient to max_grad_norm and step; returns its norm before
    clipping. A non-finite norm raises NonFiniteError instead of stepping. DeepSpeed's engine
    clips (gradient_clipping) and steps its own optimizer."""
    if uses_deepspeed(accelerator):
        model.step()
        return float(model.get_global_grad_norm())
    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_grad_norm))
    if not math.isfinite(grad_norm):  # the same all-reduced norm on every process
        optimizer.zero_grad(set_to_none=True)
        raise NonFiniteError(
            f"the gradient norm is {grad_norm}: the optimizer step was refused (a non-finite "
            "advantage, a learning rate or loss scale too large, or fp16 overflow)"
        )
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm
