"""Generation backends: given prompts and a sample count per prompt, return scored samples."""

from gvm_raft.errors import ConfigError
from gvm_raft.rollout.base import RolloutBackend, Sample, SamplingParams

__all__ = ["RolloutBackend", "Sample", "SamplingParams", "check_backend_available"]


def check_backend_available(backend: str) -> None:
    """Refuse, before any model loads, a rollout_backend whose engine is not installed."""
    if backend == "vllm":
        from gvm_raft.rollout.vllm import check_vllm_installed

        try:
            check_vllm_installed()
        except ImportError as err:
            raise ConfigError(f"rollout_backend=vllm: {err}; or use rollout_backend=hf") from None
