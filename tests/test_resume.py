"""Resume: a resumed run repeats the uninterrupted one (also after SIGKILL at random
moments), and settings that would change the experiment are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from launch import child_env
from runlogs import metric_rows

from gvm_raft.config import ConfigError, save_config
from gvm_raft.trainer import (
    train,
)


def test_resume_repeats_the_uninterrupted_run(tiny_config):
    full_dir = train(tiny_config("full"), progress=False)
    full = metric_rows(full_dir)
    train(tiny_config("cut", iterations=1), progress=False)
    resumed_dir = train(tiny_config("cut", resume=True), progress=False)
    assert metric_rows(resumed_dir) == full
    completions = [(d / "completions.jsonl").read_text() for d in (full_dir, resumed_dir)]
    assert completions[0] == completions[1]


def test_resume_refuses_settings_that_change_the_experiment(tiny_config):
    train(tiny_config("run", iterations=1), progress=False)
    changed = tiny_config("run", resume=True, allocation="uniform", beta=0.01)
    with pytest.raises(ConfigError, match=r"allocation='gvm', beta=0\.001; resuming it with "):
        train(changed, progress=False)
    extended = tiny_config("run", resume=True, eval_samples=1)
    assert [m["iteration"] for m in metric_rows(train(extended, progress=False))] == [0, 1, 2]


def test_existing_run_is_not_overwritten(tiny_config):
    train(tiny_config("run", iterations=1), progress=False)
    with pytest.raises(ConfigError, match="resume=true"):
        train(tiny_config("run", iterations=1), progress=False)


def test_killed_run_resumes_to_the_same_metrics(tiny_config, tmp_path):
    full = metric_rows(train(tiny_config("full", iterations=4), progress=False))
    killed = tmp_path / "killed"
    config_file = tmp_path / "killed.yaml"
    save_config(tiny_config("killed", iterations=4), config_file)
    process = subprocess.Popen(
        [sys.executable, "-m", "gvm_raft.cli", "train", str(config_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "latest").exists():
        assert process.poll() is None, "the training process ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    latest = (killed / "checkpoints" / "latest").read_text().strip()
    assert latest in {"iteration-000001", "iteration-000002", "iteration-000003"}

    resumed = metric_rows(train(tiny_config("killed", iterations=4, resume=True), progress=False))
    assert resumed == full
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == [
        "iteration-000004",
        "latest",
    ]


@pytest.mark.slow  # about 100 s of process starts; test_killed_run_resumes covers the path
def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_metrics(tiny_config, tmp_path):
    """Fault injection: SIGKILL at random moments (sampling, update, evaluation, checkpoint
    write, log append), resume, repeat until the run completes; the metrics and allocations
    equal the uninterrupted run's and no staging directory is left behind."""
    settings = dict(iterations=8, keep_checkpoints=2)
    full_dir = train(tiny_config("full", **settings), progress=False)
    killed = tmp_path / "killed"
    config_file = tmp_path / "killed.yaml"
    save_config(tiny_config("killed", resume=True, **settings), config_file)
    rng = np.random.default_rng(0)
    kills = 0
    metrics = killed / "metrics.jsonl"

    def stamp() -> int | None:
        return metrics.stat().st_mtime_ns if metrics.exists() else None

    for _ in range(40):
        before = stamp()
        log = (tmp_path / "stderr.txt").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "gvm_raft.cli", "train", str(config_file)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=child_env(),
        )
        deadline = time.monotonic() + 300
        while stamp() == before and process.poll() is None:  # until this process has resumed
            assert time.monotonic() < deadline, "the run wrote no metrics within 300 s"
            time.sleep(0.01)
        try:
            process.wait(timeout=float(rng.uniform(0.0, 0.8)))  # training is under way
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        assert process.returncode == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
        break
    else:
        pytest.fail("the run did not complete within 40 starts")
    assert kills >= 2
    assert metric_rows(killed) == metric_rows(full_dir)
    allocations = [(d / "allocations.jsonl").read_text() for d in (full_dir, killed)]
    assert allocations[0] == allocations[1]
    assert not list((killed / "checkpoints").glob(".*"))


def test_resume_records_only_what_happened(tiny_config, tmp_path, capsys):
    """Before: iterations=1 on a finished 2-iteration run rewrote config.yaml to 1 (metrics held
    2), eval_samples=2 was recorded though nothing was evaluated, a changed train file resumed
    silently, and resume=true on an empty directory started a run without a word."""
    data = tmp_path / "train.jsonl"
    data.write_text(Path(tiny_config("x").train_file).read_text())
    run_dir = train(tiny_config("r", train_file=str(data), iterations=2), progress=False)
    recorded = (run_dir / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="has 2 iterations done; iterations=1"):
        train(tiny_config("r", train_file=str(data), iterations=1, resume=True), progress=False)
    train(tiny_config("r", train_file=str(data), iterations=2, resume=True, eval_samples=2))
    assert (run_dir / "config.yaml").read_text() == recorded
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")
    with pytest.raises(ConfigError, match="training prompts differ from those"):
        train(tiny_config("r", train_file=str(data), iterations=3, resume=True), progress=False)
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    train(tiny_config("empty", iterations=1, resume=True))
    assert "holds no checkpoint yet, so this is a new run" in capsys.readouterr().out
    train(tiny_config("new", iterations=1, resume=True))  # a directory that did not exist
    assert "holds no checkpoint" not in capsys.readouterr().out


def test_resume_refuses_a_run_whose_metrics_log_lost_iterations(tiny_config):
    """Before: with metrics.jsonl deleted (or rows cut out) a resume continued silently, and the
    log held only the new iterations: reports and comparisons read a run without its start."""
    run_dir = train(tiny_config("r", iterations=2), progress=False)
    metrics = run_dir / "metrics.jsonl"
    rows = metrics.read_text().splitlines()
    metrics.write_text("\n".join(r for r in rows if '"iteration": 1,' not in r) + "\n")
    with pytest.raises(ConfigError, match=r"metrics.jsonl has no row for iteration 1 of the 2"):
        train(tiny_config("r", iterations=3, resume=True), progress=False)
    metrics.unlink()
    with pytest.raises(ConfigError, match=r"no row for iteration 1, 2 of the 2 .*restore the file"):
        train(tiny_config("r", iterations=3, resume=True), progress=False)
