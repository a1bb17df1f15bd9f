"""The shipped accelerate configs (configs/accelerate), applied on CPU.

accelerate turns FSDP and DeepSpeed on only on accelerators (GPUs and the like); on CPU it falls
back to plain multi-process data parallelism. ``engine_accelerator`` builds the Accelerator as
usual, then gives the process the environment ``accelerate launch --config_file CONFIG`` would
have given it and switches accelerate's state to the config's engine, so that ``prepare``
applies accelerate's own FSDP2 wrapping (``fully_shard``) or DeepSpeed engine over the gloo
process group. Mixed precision follows the run config (the accelerate configs' bf16 is
dropped: the tests run in full precision), and FSDP's cpu_ram_efficient_loading is turned on to
exercise the whole-model loading guard.

Engines: "ddp" (no change), "fsdp2", "zero2", "zero3". Run as a script it is ``gvm-raft``:
``python -m torch.distributed.run --nproc_per_node 2 tests/sharded_on_cpu.py ENGINE train CFG``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from accelerate import Accelerator, DeepSpeedPlugin, FullyShardedDataParallelPlugin
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"
ENGINE_CONFIGS = {
    "fsdp2": "fsdp2-gpus.yaml",
    "zero2": "deepspeed-zero2-gpus.yaml",
    "zero3": "deepspeed-zero3-gpus.yaml",
}
ENGINES = ("ddp", *ENGINE_CONFIGS)


def launch_environment(config_file: Path) -> dict[str, str]:
    """The environment ``accelerate launch --config_file config_file`` gives its processes."""
    from accelerate.commands.launch import (
        _validate_launch_command,
        launch_command_parser,
        prepare_deepspeed_cmd_env,
        prepare_multi_gpu_env,
    )

    args = launch_command_parser().parse_args(
        ["--config_file", str(config_file), "-m", "gvm_raft.cli"]
    )
    args, defaults, mixed_precision_in_config = _validate_launch_command(args)
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config)
        fields += ["mixed_precision"] if mixed_precision_in_config else []
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


def engine_accelerator(engine: str) -> type[Accelerator]:
    """An Accelerator class whose instances prepare models with ``engine`` on CPU."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; got {engine!r}")

    class OnCPU(Accelerator):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            if engine != "ddp":
                env = launch_environment(CONFIGS / ENGINE_CONFIGS[engine])
                os.environ.update(
                    {k: v for k, v in env.items() if "MIXED_PRECISION" not in k}
                    | {"FSDP_CPU_RAM_EFFICIENT_LOADING": "true"}
                )
            self._force()

        def prepare(self, *args, **kwargs):
            prepared = super().prepare(*args, **kwargs)
            self._force()  # DeepSpeed's initialisation resets the state to the CPU default
            return prepared

        def _force(self) -> None:
            if engine == "fsdp2":
                self.state.distributed_type = DistributedType.FSDP
                self.state.fsdp_plugin = FullyShardedDataParallelPlugin()
            elif engine.startswith("zero"):
                if self.state.distributed_type != DistributedType.DEEPSPEED:
                    plugin = DeepSpeedPlugin()
                    plugin.set_mixed_precision(self.state.mixed_precision)
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
