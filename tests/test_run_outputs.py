"""What a run leaves for people and tools: reports, tracker events, exported statistics."""

from __future__ import annotations

import json
import subprocess
import sys

import parity_reward
import pytest
from launch import child_env, write_run_config
from runlogs import allocation_rows

from gvm_raft.cli import main
from gvm_raft.config import ConfigError
from gvm_raft.run import summary_line
from gvm_raft.trainer import train


def test_completions_are_logged_with_their_prompts_statistics_and_reported(tiny_config, tmp_path):
    run_dir = train(tiny_config(iterations=3, log_completions=5), progress=False)
    records = [json.loads(line) for line in (run_dir / "completions.jsonl").open()]
    assert [r["iteration"] for r in records] == [1] * 5 + [2] * 5 + [3] * 5
    allocations = allocation_rows(run_dir)
    for record in records:
        allocation = allocations[record["iteration"] - 1]
        j = allocation["row_id"].index(record["row_id"])
        assert record["n_samples"] == allocation["n_samples"][j]
        assert record["accept_rate"] == allocation["accept_rate"][j]
        assert record["grad_norm"] == allocation["grad_norm"][j]
        expected = parity_reward.even_code_point_sum([record["prompt"]], [record["completion"]])
        assert record["reward"] == expected[0] and record["accepted"] == (expected[0] >= 1.0)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report/report.md").read_text()
    assert "### Completions of run" in report
    for iteration in (1, 2, 3):  # first, middle, last
        assert f"Iteration {iteration}:" in report
    every = train(tiny_config("every", iterations=1, log_completions=-1), progress=False)
    assert len((every / "completions.jsonl").read_text().splitlines()) == 16  # 4 x 4 samples


def test_the_console_line_shows_the_figures_that_matter():
    metrics = {
        "iteration": 3,
        "test/accuracy": 0.4321,
        "train/accept_rate": 0.25,
        "allocation/min": 2,
        "allocation/max": 14,
        "allocation/variance_ratio": 0.5,
        "samples/cumulative": 1536,
        "time/iteration": 7.6,
    }
    assert summary_line(metrics) == (
        "iteration 3 | test acc 0.432 | train acc 0.250 | n_i min 2 | max 14 | "
        "var/uniform 0.500 | samples 1536 | s 8"
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
    for name in ("accuracy", "allocation_vs_accept_rate"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name}.png)" in table
    assert main(["report", str(tmp_path), "--out", str(out)]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err


def test_tensorboard_tracker_receives_metrics_and_completions(tiny_config):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train(tiny_config("tb", iterations=1, log_with="tensorboard"), progress=False)
    events = EventAccumulator(str(next(run_dir.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert "test/accuracy" in events.Tags()["scalars"]
    assert "completions/text_summary" in events.Tags()["tensors"]
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        train(tiny_config("x", log_with="tensorbored"), progress=False)


@pytest.mark.parametrize("overrides", [{}, {"algorithm": "grpo", "allocation": "gvm-matched"}])
def test_exported_stats_reproduce_the_runs_allocation(tiny_config, tmp_path, capsys, overrides):
    run_dir = train(tiny_config("run", iterations=2, **overrides), progress=False)
    recorded = [
        json.loads(line) for line in (run_dir / "allocations.jsonl").read_text().splitlines()
    ]
    stats, sizes = tmp_path / "stats.jsonl", tmp_path / "sizes.json"
    assert main(["stats", str(run_dir), "--iteration", "1", "--out", str(stats)]) == 0
    exported = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [r["row_id"] for r in exported] == recorded[0]["row_id"]
    # The command stats prints: budget 4 x 4, the run's strategy, at least k = 2 per prompt
    printed = capsys.readouterr().out.split("the run's n_i again: gvm-raft ")[1].split()
    assert printed[:3] == ["allocate", str(stats), "--budget"] and "--min" in printed
    assert main([*printed, "--out", str(sizes)]) == 0
    assert json.loads(sizes.read_text()) == recorded[0]["n_samples"]
    assert main(["stats", str(run_dir), "--iteration", "7", "--out", str(stats)]) == 2


def test_a_cli_run_prints_no_deepspeed_warning(tiny_world, tmp_path):
    """Before: every start printed DeepSpeed's 'Setting accelerator to CPU' (accelerate imports
    DeepSpeed when installed), though nothing used it."""
    config = write_run_config(tiny_world, tmp_path / "run.yaml", tmp_path / "run", "iterations: 1")
    command = [sys.executable, "-m", "gvm_raft.cli", "train", str(config)]
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "iteration 1 |" in done.stdout
    assert "Setting accelerator to CPU" not in done.stdout + done.stderr


def test_the_console_has_no_checkpoint_or_loading_bars(tiny_config, capsys):
    """Before: a 'Loading weights' bar at start and a 'Writing model shards' bar at every
    checkpoint, between the one-line-per-iteration summaries."""
    run_dir = train(tiny_config("bars", iterations=2), progress=True)
    train(tiny_config("bars", iterations=3, resume=True), progress=True)
    captured = capsys.readouterr()
    assert "iteration 3 |" in captured.out and (run_dir / "checkpoints/latest").exists()
    for bar in ("Loading weights", "Writing model shards"):
        assert bar not in captured.err and bar not in captured.out


def test_accuracy_axes_start_at_zero_with_whole_iterations():
    """Before: a 3-iteration plot ticked 0.5, 1.5, ... and its accuracy axis went below 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gvm_raft.report import style_accuracy_axes

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2, 3], [0.01, 0.2, 0.3, 0.35])
    style_accuracy_axes(ax, "iteration")
    fig.canvas.draw()
    assert ax.get_ylim()[0] == 0.0
    ticks = [t for t in ax.get_xticks() if 0 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)
