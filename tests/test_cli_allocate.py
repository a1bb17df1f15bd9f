"""`gvm-raft allocate` and the statistics file it reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gvm_raft.allocation import allocate
from gvm_raft.cli import main
from gvm_raft.stats import PromptStats, StatsFileError, read_prompt_stats, write_prompt_stats


def write_lines(path, rows) -> None:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")


def test_reads_rates_or_counts_in_any_order(tmp_path):
    stats = tmp_path / "stats.jsonl"
    write_lines(
        stats,
        [
            {"index": 2, "grad_norm": 3.0, "accepted": 1, "sampled": 4},
            {"index": 0, "grad_norm": 1.5, "accept_rate": 0.5},
            "",
            {"index": 1, "grad_norm": 0, "accepted": 0, "sampled": 8},
        ],
    )
    read = read_prompt_stats(stats)
    assert read.grad_norms.tolist() == [1.5, 0.0, 3.0]
    assert read.accept_rates.tolist() == [0.5, 0.0, 0.25]


def test_write_read_round_trip(tmp_path):
    stats = PromptStats(np.array([1.0, 2.5]), np.array([0.125, 1.0]))
    write_prompt_stats(tmp_path / "s.jsonl", stats)
    read = read_prompt_stats(tmp_path / "s.jsonl")
    assert read.grad_norms.tolist() == [1.0, 2.5] and read.accept_rates.tolist() == [0.125, 1.0]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", ":2: not valid JSON"),
        ("[1, 2]", ":2: expected a JSON object"),
        ('{"index": -1, "grad_norm": 1, "accept_rate": 0.5}', ":2: 'index' must be"),
        ('{"index": 0, "grad_norm": 1, "accept_rate": 0.5}', ":2: index 0 appears twice"),
        (
            '{"index": 1, "grad_norm": "big", "accept_rate": 0.5}',
            ":2: 'grad_norm' must be a number",
        ),
        ('{"index": 1, "grad_norm": NaN, "accept_rate": 0.5}', ":2: 'grad_norm' must be finite"),
        ('{"index": 1, "grad_norm": 1, "accept_rate": 1.5}', ":2: 'accept_rate' must lie in"),
        ('{"index": 1, "grad_norm": 1, "accepted": 5, "sampled": 4}', ":2: need 0 <= 'accepted'"),
        ('{"index": 1, "grad_norm": 1}', ":2: give either 'accept_rate' or both"),
        ('{"index": 3, "grad_norm": 1, "accept_rate": 0.5}', "missing \\[1\\]"),
    ],
)
def test_malformed_lines_are_reported_with_line_number(tmp_path, bad_line, message):
    stats = tmp_path / "stats.jsonl"
    write_lines(stats, [{"index": 0, "grad_norm": 1.0, "accept_rate": 0.5}, bad_line])
    with pytest.raises(StatsFileError, match=message):
        read_prompt_stats(stats)


def test_allocate_writes_sample_sizes_and_summary(tmp_path, capsys):
    rows = [
        {"index": i, "grad_norm": g, "accepted": a, "sampled": 8}
        for i, (g, a) in enumerate([(10.0, 1), (4.0, 4), (1.0, 8), (0.0, 0)])
    ]
    write_lines(tmp_path / "stats.jsonl", rows)
    out = tmp_path / "sizes.json"
    code = main(
        [
            "allocate",
            str(tmp_path / "stats.jsonl"),
            "--budget",
            "32",
            "--method",
            "exact",
            "--max",
            "20",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    sizes = json.loads(out.read_text())
    expected = allocate([10.0, 4.0, 1.0, 0.0], [1 / 8, 0.5, 1.0, 0.0], 32, "exact", max_samples=20)
    assert sizes == expected.tolist() and sum(sizes) == 32
    report = capsys.readouterr().out
    assert "32 samples over 4 prompts" in report
    assert "1 prompts get 0" in report
    assert "ratio" in report


def test_allocate_prints_sizes_to_stdout_without_out(tmp_path, capsys):
    write_lines(tmp_path / "s.jsonl", [{"index": 0, "grad_norm": 1.0, "accept_rate": 0.5}])
    assert main(["allocate", str(tmp_path / "s.jsonl"), "--budget", "5"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [5]
    assert "5 samples over 1 prompts" in captured.err


def test_allocate_reports_bad_input_without_traceback(tmp_path, capsys):
    write_lines(tmp_path / "s.jsonl", [{"index": 0, "grad_norm": 1.0, "accept_rate": 0.5}])
    assert main(["allocate", str(tmp_path / "s.jsonl"), "--budget", "5", "--min", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gvm-raft allocate: error: budget 5 is below the sum of min_samples")
    assert main(["allocate", str(tmp_path / "missing.jsonl"), "--budget", "5"]) == 2
    assert "no such statistics file" in capsys.readouterr().err
