"""The benchmark figures in docs/results.md come from the runs archived in benchmarks/results/
(each run's config.yaml, metrics.jsonl and allocations.jsonl, written by
``benchmarks/convergence.py --archive``): the report recomputed from them holds every row the
page shows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gvm_raft.compare_report import write_results, write_sweep
from gvm_raft.rundir import read_metrics

ROOT = Path(__file__).resolve().parents[1]
ARCHIVES = sorted(p.parent for p in (ROOT / "benchmarks" / "results").glob("*/runs"))
SWEEPS = sorted((ROOT / "benchmarks" / "results").glob("*/sweep-*"))


def _archived_results(comparison: Path) -> dict[str, list[list[dict]]]:
    """Each archived arm's metric rows, seed by seed in seed order (paired across arms)."""
    return {
        f"{arm.parent.name}/{arm.name}": [
            read_metrics(run)
            for run in sorted(arm.glob("seed-*"), key=lambda r: int(r.name.split("-")[1]))
        ]
        for arm in sorted((comparison / "runs").glob("*/*"))
    }


def _rows_missing_from_page(text: str) -> list[str]:
    page = (ROOT / "docs" / "results.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows
    return [row for row in rows if row not in page]


def test_there_are_archives():
    assert ARCHIVES, "benchmarks/results/ holds no archived comparison"


@pytest.mark.parametrize("archive", ARCHIVES, ids=lambda p: p.name)
def test_the_results_page_shows_the_archived_runs_report(archive, tmp_path):
    copy = tmp_path / archive.name
    shutil.copytree(archive / "runs", copy / "runs")
    results = _archived_results(copy)
    algorithms = sorted({label.split("/")[0] for label in results})
    text = write_results(results, copy, {a: f"{a}/uniform" for a in algorithms})
    missing = _rows_missing_from_page(text)
    assert not missing, f"rows of {archive.name}'s report not in docs/results.md: {missing}"


@pytest.mark.parametrize("sweep", SWEEPS, ids=lambda p: f"{p.parent.name}-{p.name}")
def test_the_results_page_shows_the_archived_sweeps_report(sweep, tmp_path):
    key = sweep.name.removeprefix("sweep-")
    by_value = {
        point.name.partition("=")[2]: _archived_results(point)
        for point in sorted(sweep.glob(f"{key}=*"), key=lambda p: -float(p.name.partition("=")[2]))
    }
    strategies = sorted({label.split("/")[1] for found in by_value.values() for label in found})
    assert "uniform" in strategies, f"{sweep} has no uniform baseline"
    for strategy in (s for s in strategies if s != "uniform"):
        text = write_sweep(by_value, key, tmp_path, strategy)
        missing = _rows_missing_from_page(text)
        assert not missing, f"rows of {sweep}'s {strategy} report not in docs/results.md: {missing}"
