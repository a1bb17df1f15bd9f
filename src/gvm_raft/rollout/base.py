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

    prompt_in_call: index of its prompt in the ``generate`` call's list of prompts.
    prompt_ids: the prompt's tokens as the backend encoded them (one list shared by the
        prompt's samples), so nothing downstream tokenises the prompt again.
    token_ids: the response tokens, ending with eos when finish_reason is "stop".
    log_probs: log pi(token) under the sampling policy softmax(logits / temperature) (under
        softmax(logits) for greedy decoding), one per token, before top-p truncation.
    """

    prompt_in_call: int
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    log_probs: list[float]
    finish_reason: FinishReason


class RolloutBackend(Protocol):
    def generate(
        self,
        prompts: Sequence[str],
        n_samples: Sequence[int],
        params: SamplingParams,
        seed: int,
    ) -> list[list[Sample]]:
        """n_samples[i] samples of prompts[i]; result[i] holds exactly n_samples[i] samples."""
        ...

    def sync_weights(self, model: Any) -> None:
        """Make later samples come from ``model``'s current parameters (called after updates)."""
        ...

    def close(self) -> None:
        """Release the engine (called once, after the last generation)."""
        ...


def check_n_samples(prompts: Sequence[str], n_samples: Sequence[int]) -> None:
    if len(prompts) != len(n_samples):
        raise ValueError(f"got {len(prompts)} prompts but {len(n_samples)} sample counts")
    for i, count in enumerate(n_samples):
        if isinstance(count, bool) or int(count) != count or count < 0:
            raise ValueError(f"sample count of prompt {i} must be a whole number >= 0; got {count}")
