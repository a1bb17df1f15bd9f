"""accelerate turns FSDP and DeepSpeed on only on accelerators (GPUs and the like); on CPU it
falls back to plain multi-process data parallelism. To test gvm-raft's sharded paths on CPU,
``engine_accelerator`` switches accelerate's state right after it is built, so that ``prepare``
applies accelerate's own FSDP2 wrapping (``fully_shard``) or DeepSpeed engine over the gloo
process group. Engines: "ddp" (no change), "fsdp2", "zero2", "zero3".

Run as a script it is ``gvm-raft`` with that accelerator:
``python -m torch.distributed.run --nproc_per_node 2 tests/sharded_on_cpu.py ENGINE train CFG``.
"""

from __future__ import annotations

import sys

from accelerate import Accelerator, DeepSpeedPlugin, FullyShardedDataParallelPlugin
from accelerate.utils import DistributedType

ENGINES = ("ddp", "fsdp2", "zero2", "zero3")


def engine_accelerator(engine: str) -> type[Accelerator]:
    """An Accelerator class whose instances prepare models with ``engine`` on CPU."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; got {engine!r}")

    class OnCPU(Accelerator):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._force()

        def prepare(self, *args, **kwargs):
            prepared = super().prepare(*args, **kwargs)
            self._force()  # DeepSpeed's initialisation resets the state to the CPU default
            return prepared

        def _force(self) -> None:
            if engine == "fsdp2":
                self.state.distributed_type = DistributedType.FSDP
                self.state.fsdp_plugin = FullyShardedDataParallelPlugin(
                    fsdp_version=2, auto_wrap_policy="transformer_based_wrap"
                )
            elif engine.startswith("zero"):
                if self.state.distributed_type != DistributedType.DEEPSPEED:
                    plugin = DeepSpeedPlugin(
                        zero_stage=int(engine[-1]), gradient_accumulation_steps=1
                    )
                    plugin.set_mixed_precision("no")
                    plugin.select(_from_accelerator_state=True)
                    self.state.deepspeed_plugins = plugin
                    self.state.distributed_type = DistributedType.DEEPSPEED
                if not hasattr(self, "deepspeed_engine_wrapped"):
                    self.deepspeed_engine_wrapped = None

    return OnCPU


if __name__ == "__main__":
    import gvm_raft.run
    from gvm_raft.cli import main

    gvm_raft.run.Accelerator = engine_accelerator(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
