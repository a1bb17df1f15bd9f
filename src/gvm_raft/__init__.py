"""gvm-raft: RAFT, RAFT++ and GRPO with gradient-variance-minimising sample allocation (GVM:
Yao et al., 2025, https://arxiv.org/abs/2505.02391; the RLHFlow implementation is
https://github.com/RLHFlow/GVM).

``from gvm_raft import GVMConfig, GVMTrainer`` trains (see api.py); ``gvm_raft.allocation``
is the allocation alone, pure numpy. Names load on first use, so importing the allocation
does not import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Allocation", "GVMConfig", "GVMTrainer", "allocate"]

_HOMES = {
    "Allocation": "gvm_raft.allocation",
    "allocate": "gvm_raft.allocation",
    "GVMConfig": "gvm_raft.config",
    "GVMTrainer": "gvm_raft.api",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'gvm_raft' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
