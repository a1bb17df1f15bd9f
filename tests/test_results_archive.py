"""The benchmark figures in docs/results.md come from the runs archived in benchmarks/results/
(each run's config.yaml, metrics.jsonl and allocations.jsonl, written by
``benchmarks/convergence.py --archive``): the report recomputed from them holds every row the
page shows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gvm_raft.compare_report import write_results
from gvm_raft.rundir import read_metrics

ROOT = Path(__file__).resolve().parents[1]
ARCHIVES = sorted(p.parent for p in (ROOT / "benchmarks" / "results").glob("*/runs"))


def test_there_are_archives():
    assert ARCHIVES, "benchmarks/results/ holds no archived comparison"


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_the_results_page_shows_the_archived_runs_report(archive, tmp_path):
    copy = tmp_path / archive.name
    shutil.copytree(archive / "runs", copy / "runs")
    results = {
        f"{arm.parent.name}/{arm.name}": [read_metrics(run) for run in sorted(arm.glob("seed-*"))]
        for arm in sorted((copy / "runs").glob("*/*"))
    }
    algorithms = sorted({label.split("/")[0] for label in results})
    text = write_results(results, copy, {a: f"{a}/uniform" for a in algorithms})
    page = (ROOT / "docs" / "results.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "/" in line[:12]]
    assert rows
    missing = [row for row in rows if row not in page]
    assert not missing, f"rows of {archive.name}'s report not in docs/results.md: {missing}"
