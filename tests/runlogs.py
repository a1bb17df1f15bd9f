"""A run directory's logs as the tests read them."""

from __future__ import annotations

import json
from pathlib import Path


def metric_rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the timings (which differ between equal runs)."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [
        {k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in lines
    ]


def allocation_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "allocations.jsonl").read_text().splitlines()]
