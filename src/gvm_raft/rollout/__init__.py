"""Generation backends: given prompts and a sample count per prompt, return scored samples."""

from gvm_raft.rollout.base import RolloutBackend, Sample, SamplingParams

__all__ = ["RolloutBackend", "Sample", "SamplingParams"]
