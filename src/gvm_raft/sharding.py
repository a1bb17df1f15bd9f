"""Full parameters of a policy that the training engine may shard (FSDP).

Rollouts, gradient norms and evaluation give each process a different amount of work, so they
cannot run on a sharded module (every forward would all-gather, and unequal forward counts
hang). When the engine shards parameters, every process keeps a full-parameter replica of the
policy for that work and refreshes it from the trained module after each update; when it does
not (one process, DDP), the replica is the trained module itself and costs nothing.

Optimizer state is checkpointed in full, keyed by parameter name, so a checkpoint does not
depend on the engine or the process count.
"""

from __future__ import annotations

import copy

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)


def shards_parameters(accelerator: Accelerator) -> bool:
    """True when no process holds the whole model (FSDP 1 or 2)."""
    return accelerator.distributed_type == DistributedType.FSDP


def make_replica(accelerator: Accelerator, model: torch.nn.Module) -> torch.nn.Module | None:
    """A full-parameter copy of the not-yet-prepared model when the engine will shard it."""
    if not shards_parameters(accelerator):
        return None
    return copy.deepcopy(model).to(accelerator.device)


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the prepared model, whole, on every process (a collective:
    every process must call it)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


@torch.no_grad()
def refresh_replica(model: torch.nn.Module, replica: torch.nn.Module) -> None:
    """Copy the trained (sharded) model's current parameters into the replica (a collective)."""
    state = full_state_dict(model)
    for name, tensor in replica.state_dict().items():
        tensor.copy_(state[name])


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's whole state keyed by parameter name, on the main process (a collective);
    other processes get an empty dict."""
    return get_optimizer_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def load_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """Load a whole, name-keyed optimizer state; each process keeps its own shard of it."""
    set_optimizer_state_dict(
        model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
    )
