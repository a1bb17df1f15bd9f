"""The named random streams: distinct, reproducible, and the sampling offset only moves rollouts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gvm_raft.seeds import SAMPLING_STREAMS, Stream, child_seed, stream_rng, stream_seed


def test_every_stream_and_coordinate_gets_its_own_seed():
    seeds = [
        stream_seed(0, stream, iteration, process)
        for stream, iteration, process in itertools.product(Stream, range(1, 4), range(2))
    ]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    assert stream_seed(0, Stream.STAGE1, 1, 0) != stream_seed(1, Stream.STAGE1, 1, 0)


def test_streams_are_reproducible_and_independent_of_what_ran_before():
    first = stream_rng(3, Stream.MINI_BATCH_ORDER, 5).permutation(10)
    stream_rng(3, Stream.MINI_BATCH_ORDER, 4).permutation(10)  # another iteration in between
    assert first.tolist() == stream_rng(3, Stream.MINI_BATCH_ORDER, 5).permutation(10).tolist()
    expected = np.random.default_rng(np.random.SeedSequence([3, 6, 5])).permutation(10)
    assert first.tolist() == expected.tolist()  # the derivation: (seed, stream, coordinates)


def test_the_sampling_offset_moves_rollout_streams_only():
    for stream in SAMPLING_STREAMS:
        assert stream_seed(0, stream, 1, 0, sampling_offset=1000) != stream_seed(0, stream, 1, 0)
    assert stream_seed(0, Stream.STAGE2, 1, 0, sampling_offset=0) == stream_seed(
        0, Stream.STAGE2, 1, 0
    )
    with pytest.raises(ValueError, match="rollout streams only, not PROMPT_ORDER"):
        stream_seed(0, Stream.PROMPT_ORDER, 1, sampling_offset=1000)


def test_child_seeds_fit_vllm_and_differ_per_request():
    seeds = [child_seed(12345, i) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**31 for s in seeds)
