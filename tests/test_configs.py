"""Every shipped config loads and validates; the paper configs differ only where they should."""

from __future__ import annotations

from pathlib import Path

import pytest

from gvm_raft.config import load_config

CONFIGS = sorted(
    p
    for p in (Path(__file__).parent.parent / "configs").rglob("*.yaml")
    if p.parent.name != "accelerate"  # accelerate launch configs, not run configs
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    load_config(path)


def test_paper_arms_share_everything_but_algorithm_and_allocation():
    paper = {p.stem: vars(load_config(p)) for p in CONFIGS if p.parent.name == "paper"}
    assert len(paper) == 4
    allowed = {"algorithm", "allocation", "stage1_samples", "reuse_stage1", "output_dir"}
    first = next(iter(paper.values()))
    for values in paper.values():
        assert {k for k in values if values[k] != first[k]} <= allowed
