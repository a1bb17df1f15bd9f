"""Every random stream of a training run, by name.

A stream's seed is derived from (run seed, stream, then the stream's coordinates: iteration,
process, round, ...) by numpy's SeedSequence, so streams never share state, a resumed run
repeats an uninterrupted one (nothing depends on what ran before in the process), and no
stream's seed is an offset or a prime picked by hand.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """The run's random streams (the values are part of the derivation: never renumber)."""

    PROMPT_ORDER = 1  # the per-epoch permutation of the training prompts
    STAGE1 = 2  # stage-1 rollouts (estimating p_i and G_i)
    STAGE2 = 3  # stage-2 rollouts (the allocated samples)
    REFILL_PROMPTS = 4  # which fresh prompts dynamic filtering draws, per round
    REFILL = 5  # the refill rounds' rollouts
    MINI_BATCH_ORDER = 6  # the M-step's shuffle of the batch into mini-batches
    EVALUATION = 7  # the sampled evaluation (the same every iteration: paired curves)
    COMPLETION_LOG = 8  # which completions go to completions.jsonl
    DROPOUT = 9  # dropout in the M-step's forward passes (LoRA dropout, a model's own)
    ADAPTER_INIT = 10  # a new LoRA adapter's initial matrices


SAMPLING_STREAMS = frozenset({Stream.STAGE1, Stream.STAGE2, Stream.REFILL})


def stream_seed(seed: int, stream: Stream, *coordinates: int, sampling_offset: int = 0) -> int:
    """An integer seed in [0, 2^63) for torch or vLLM. Rollout streams also take the run's
    sampling_seed_offset (same prompts, other samples: the A/A calibration)."""
    return int(
        _sequence(seed, stream, coordinates, sampling_offset).generate_state(1, np.uint64)[0] >> 1
    )


def child_seed(seed: int, *coordinates: int) -> int:
    """A seed in [0, 2^31) for one part of a stream (e.g. one request of a generate call)."""
    return int(np.random.SeedSequence([seed, *coordinates]).generate_state(1)[0] >> 1)


def stream_rng(seed: int, stream: Stream, *coordinates: int) -> np.random.Generator:
    """A numpy generator for a stream that is not a rollout (prompt order, mini-batches)."""
    return np.random.default_rng(_sequence(seed, stream, coordinates, 0))


def _sequence(
    seed: int, stream: Stream, coordinates: tuple[int, ...], sampling_offset: int
) -> np.random.SeedSequence:
    if sampling_offset and stream not in SAMPLING_STREAMS:
        raise ValueError(f"sampling_offset applies to rollout streams only, not {stream.name}")
    entropy = [seed, int(stream), *coordinates]
    if sampling_offset:
        entropy.append(sampling_offset)
    return np.random.SeedSequence(entropy)
