"""`gvm-raft allocate` and the statistics file it reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gvm_raft.allocation import allocate
from gvm_raft.cli import main
from gvm_raft.stats import (
    PromptStats,
    RunningPromptStats,
    StatsFileError,
    accept_rate_estimate,
    mean_accepted_grad_norm,
    read_prompt_stats,
    write_prompt_stats,
)


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
            "--strategy",
            "gvm",
            "--max",
            "20",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    sizes = json.loads(out.read_text())
    expected = allocate(
        [10.0, 4.0, 1.0, 0.0], [1 / 8, 0.5, 1.0, 0.0], 32, "gvm", max_samples=20
    ).n_samples
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


def test_accept_rate_estimate_plain_and_posterior_mean():
    accepted, sampled = np.array([0, 3, 8]), np.array([8, 8, 8])
    np.testing.assert_allclose(accept_rate_estimate(accepted, sampled), [0.0, 3 / 8, 1.0])
    # Beta(1, 1) prior: posterior Beta(1 + accepted, 1 + rejected), mean (accepted + 1)/(n + 2)
    np.testing.assert_allclose(
        accept_rate_estimate(accepted, sampled, (1.0, 1.0)), [1 / 10, 4 / 10, 9 / 10]
    )
    np.testing.assert_allclose(accept_rate_estimate([0], [0], (2.0, 6.0)), [0.25])
    assert accept_rate_estimate([0], [0]).tolist() == [0.0]


def test_mean_grad_norm_over_accepted_samples():
    np.testing.assert_allclose(mean_accepted_grad_norm([[1.0, 3.0], [], [5.0]]), [2.0, 0.0, 5.0])


def test_a_prior_lets_a_zero_of_k_prompt_get_samples():
    # k = 4: accepted 2, 1 and 0 with G = 1 and 3 observed; Beta(1, 1) prior: p = 3/6, 2/6, 1/6
    # and the unobserved G takes the batch median, 2. With alpha = 0 (q = p) the weights
    # G / sqrt(p) are 1.414, 5.196 and 4.899, so 23 samples split 2.83 / 10.38 / 9.79
    accepted, sampled, grads = np.array([2, 1, 0]), np.array([4, 4, 4]), np.array([1.0, 3.0, 0])
    smoothed = RunningPromptStats(prior=(1.0, 1.0)).update([10, 11, 12], accepted, sampled, grads)
    np.testing.assert_allclose(smoothed.accept_rates, [3 / 6, 2 / 6, 1 / 6])
    np.testing.assert_allclose(smoothed.grad_norms, [1.0, 3.0, 2.0])
    sizes = allocate(
        smoothed.grad_norms, smoothed.accept_rates, 23, "gvm-rounding", alpha=0.0
    ).n_samples
    assert sizes.tolist() == [3, 10, 10]  # before: G = 0 gave the third prompt nothing
    plain = RunningPromptStats().update([10, 11, 12], accepted, sampled, grads)
    np.testing.assert_allclose(plain.grad_norms, [1.0, 3.0, 0.0])  # the reference's estimates
    assert (
        allocate(plain.grad_norms, plain.accept_rates, 23, "gvm-rounding", alpha=0.0).n_samples[2]
        == 0
    )


def test_running_stats_blend_revisited_prompts():
    running = RunningPromptStats(decay=0.75)
    first = running.update([7, 9], np.array([2, 0]), np.array([8, 8]), np.array([4.0, 0.0]))
    np.testing.assert_allclose(first.accept_rates, [0.25, 0.0])
    second = running.update([9, 7], np.array([8, 6]), np.array([8, 8]), np.array([1.0, 8.0]))
    np.testing.assert_allclose(second.accept_rates, [0.25 * 1.0, 0.75 * 0.25 + 0.25 * 0.75])
    # prompt 9 accepted nothing at first, so its G was not observed: the second visit's G is
    # its first estimate (before: 0.75 * 0 + 0.25 * 1.0, averaging in a G never measured)
    np.testing.assert_allclose(second.grad_norms, [1.0, 0.75 * 4.0 + 0.25 * 8.0])
    restored = RunningPromptStats(decay=0.75)
    restored.load_state_dict(json.loads(json.dumps(running.state_dict())))
    np.testing.assert_allclose(restored.estimates([7, 9, 3]).accept_rates, [0.375, 0.25, 0.0])
    third = running.update([7], np.array([0]), np.array([8]), np.array([0.0]))
    np.testing.assert_allclose(third.accept_rates, [0.75 * 0.375])
    np.testing.assert_allclose(third.grad_norms, [5.0])  # nothing accepted: G kept


def test_allocate_refuses_budgets_beyond_what_it_can_compute_by_name(tmp_path, capsys):
    """Before: --budget 10**19 spun for over 10 minutes, 10**20 raised a TypeError, and knapsack
    with a budget of 10**9 on 4 prompts asked for 29.8 GiB."""
    rows = [{"index": i, "grad_norm": 1.0 + i, "accept_rate": 0.2 * (i + 1)} for i in range(4)]
    write_lines(tmp_path / "s.jsonl", rows)
    stats = str(tmp_path / "s.jsonl")
    for budget, strategy in [(10**19, "gvm"), (10**20, "uniform"), (10**19, "gvm-rounding")]:
        assert main(["allocate", stats, "--budget", str(budget), "--strategy", strategy]) == 2
        assert "budget must be at most 2**53" in capsys.readouterr().err
    assert main(["allocate", stats, "--budget", str(10**9), "--strategy", "knapsack"]) == 2
    assert "knapsack ranks one marginal gain per prompt" in capsys.readouterr().err
    for strategy in ("gvm", "gvm-rounding", "gvm-accuracy", "gvm-grpo", "uniform"):
        assert main(["allocate", stats, "--budget", str(2**53), "--strategy", strategy]) == 0
        assert sum(json.loads(capsys.readouterr().out)) == 2**53


def test_allocate_summary_says_in_words_what_inf_and_nan_meant(tmp_path, capsys):
    """Before: a budget below the prompt count printed 'inf (uniform inf, ratio nan)', and
    max_accept_rate 0 gave the whole budget to the one prompt with p = 0 and G = 0."""
    rows = [
        {"index": i, "grad_norm": g, "accept_rate": p}
        for i, (g, p) in enumerate([(1.0, 0.5), (2.0, 0.25), (0.0, 0.0), (1.0, 0.75)])
    ]
    write_lines(tmp_path / "s.jsonl", rows)
    stats = str(tmp_path / "s.jsonl")
    assert main(["allocate", stats, "--budget", "2"]) == 0
    err = capsys.readouterr().err
    assert "infinite: a prompt with G > 0 and p > 0 got no sample" in err and "nan" not in err
    assert main(["allocate", stats, "--budget", "16", "--max-accept-rate", "0"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [4, 4, 4, 4]
    assert "left by the filters was zero; falling back to uniform" in captured.err
    write_lines(tmp_path / "z.jsonl", [{"index": 0, "grad_norm": 0.0, "accept_rate": 0.0}])
    assert main(["allocate", str(tmp_path / "z.jsonl"), "--budget", "4"]) == 0
    assert "0 (no prompt has both G > 0 and p > 0)" in capsys.readouterr().err
