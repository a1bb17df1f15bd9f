"""accelerate turns FSDP on only on accelerators (GPUs and the like); on CPU it falls back to
plain multi-process data parallelism. To test gvm-raft's FSDP path on CPU, ``FSDPOnCPU``
switches accelerate's state to FSDP right after it is built, so that ``prepare`` applies
accelerate's own FSDP wrapping (``fully_shard`` for version 2) over the gloo process group.

Run as a script it is ``gvm-raft`` with that accelerator:
``python -m torch.distributed.run --nproc_per_node 2 tests/fsdp_on_cpu.py VERSION train CFG``.
"""

from __future__ import annotations

import sys

from accelerate import Accelerator, FullyShardedDataParallelPlugin
from accelerate.utils import DistributedType


def fsdp_accelerator(version: int):
    """An Accelerator class whose instances shard models with FSDP ``version`` on CPU."""

    class FSDPOnCPU(Accelerator):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.state.distributed_type = DistributedType.FSDP
            self.state.fsdp_plugin = FullyShardedDataParallelPlugin(
                fsdp_version=version, auto_wrap_policy="transformer_based_wrap"
            )

    return FSDPOnCPU


if __name__ == "__main__":
    import gvm_raft.run
    from gvm_raft.cli import main

    gvm_raft.run.Accelerator = fsdp_accelerator(int(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
