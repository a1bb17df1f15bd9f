"""The interface every generation backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature 0 means greedy decoding."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0; got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1]; got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1; got {self.max_new_tokens}")


@dataclass
class Sample:
    """One generated response.

    token_ids: the response tokens, ending with eos when finish_reason is "stop".
    log_probs: log pi(token) under the sampling policy softmax(logits / temperature) (under
        softmax(logits) for greedy decoding), one per token, before top-p truncation.
    """

    prompt_index: int
    token_ids: list[int]
    text: str
    log_probs: list[float]
    finish_reason: FinishReason


class RolloutBackend(Protocol):
    def generate(
        self,
        prompts: Sequence[str],
        counts: Sequence[int],
        params: SamplingParams,
        seed: int,
    ) -> list[list[Sample]]:
        """counts[i] samples of prompts[i]; result[i] holds exactly counts[i] samples."""
        ...

    def sync_weights(self, model: Any) -> None:
        """Make later samples come from ``model``'s current parameters (called after updates)."""
        ...

    def close(self) -> None:
        """Release the engine (called once, after the last generation)."""
        ...


def check_counts(prompts: Sequence[str], counts: Sequence[int]) -> None:
    if len(prompts) != len(counts):
        raise ValueError(f"got {len(prompts)} prompts but {len(counts)} sample counts")
    for i, count in enumerate(counts):
        if isinstance(count, bool) or int(count) != count or count < 0:
            raise ValueError(f"sample count of prompt {i} must be a whole number >= 0; got {count}")
