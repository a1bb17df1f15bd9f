"""What a run leaves for people and tools: reports, tracker events, exported statistics."""

from __future__ import annotations

import json

import pytest

from gvm_raft.cli import main
from gvm_raft.config import ConfigError
from gvm_raft.trainer import (
    train,
)


def test_report_overlays_runs(tiny_config, tmp_path, capsys):
    runs = [
        train(tiny_config(name, iterations=1, allocation=name), progress=False)
        for name in ("uniform", "gvm")
    ]
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    table = (out / "report.md").read_text()
    assert "uniform (uniform-RAFT++)" in table and "gvm (gvm-RAFT++)" in table
    for name in ("accuracy_vs_iteration", "accuracy_vs_samples", "allocation_vs_accept_rate"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name}.png)" in table
    assert main(["report", str(tmp_path), "--out", str(out)]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err


def test_tensorboard_tracker_receives_metrics(tiny_config):
    pytest.importorskip("tensorboard")
    run_dir = train(tiny_config("tb", iterations=1, log_with="tensorboard"), progress=False)
    assert list(run_dir.rglob("events.out.tfevents.*"))
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        train(tiny_config("x", log_with="tensorbored"), progress=False)


def test_exported_stats_reproduce_the_runs_allocation(tiny_config, tmp_path):
    run_dir = train(tiny_config("run", iterations=2), progress=False)
    recorded = [
        json.loads(line) for line in (run_dir / "allocations.jsonl").read_text().splitlines()
    ]
    stats, sizes = tmp_path / "stats.jsonl", tmp_path / "sizes.json"
    assert main(["stats", str(run_dir), "--iteration", "1", "--out", str(stats)]) == 0
    exported = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [r["row_id"] for r in exported] == recorded[0]["row_id"]
    # The run's rule: budget 4 x 4, gvm, at least k = 2 per prompt (stage 1 reused).
    allocate = ["allocate", str(stats), "--budget", "16", "--strategy", "gvm", "--min", "2"]
    assert main([*allocate, "--out", str(sizes)]) == 0
    assert json.loads(sizes.read_text()) == recorded[0]["n_samples"]
    assert main(["stats", str(run_dir), "--iteration", "7", "--out", str(stats)]) == 2


def test_an_old_runs_allocations_are_refused_by_field_name(tiny_config, capsys):
    run_dir = train(tiny_config(iterations=1), progress=False)
    path = run_dir / "allocations.jsonl"
    row = json.loads(path.read_text())
    row["prompt_index"], row["samples"] = row.pop("row_id"), row.pop("n_samples")
    path.write_text(json.dumps(row) + "\n")
    assert main(["stats", str(run_dir), "--out", str(run_dir / "s.jsonl")]) == 2
    assert "prompt_index and samples, now row_id and n_samples" in capsys.readouterr().err
