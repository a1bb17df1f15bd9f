"""The convergence harness: speed-up arithmetic on hand-made curves, and a tiny end-to-end run."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest
import yaml

from gvm_raft.cli import main
from gvm_raft.compare import _arm_config, ablations, make_arms, run_arms
from gvm_raft.compare_report import (
    accept_rate_bin,
    arm_allocations,
    budget_by_accept_rate,
    budget_by_group,
    group_table,
    write_results,
    write_sweep,
)
from gvm_raft.compare_stats import bootstrap_interval, first_reach, speedup, summarise
from gvm_raft.demo import bundled_config
from gvm_raft.errors import ConfigError
from gvm_raft.rundir import archive_comparison
from gvm_raft.tasks.demo_world import world_overrides


def rows(accuracy, tokens_per_iteration):
    return [
        {"iteration": i, "test/accuracy": a, "tokens/cumulative": i * tokens_per_iteration}
        for i, a in enumerate(accuracy)
    ]


def test_first_reach_and_speedup():
    assert first_reach([0, 1, 2, 3], [0.1, 0.2, 0.4, 0.3], 0.3) == pytest.approx(1.5)
    assert first_reach([0, 10, 30], [0.1, 0.25, 0.45], 0.35) == pytest.approx(20.0)
    assert first_reach([0, 1, 2], [0.1, 0.3, 0.5], 0.3) == 1.0  # reached exactly
    assert first_reach([0, 1], [0.1, 0.2], 0.3) is None
    assert first_reach([0, 1, 2], [0.5, 0.6, 0.7], 0.4) == 1  # the base model does not count
    assert first_reach([0, 1, 2], [0.5, 0.1, 0.6], 0.4) == pytest.approx(1.6)
    assert speedup(6.0, 2.0) == 3.0
    assert speedup(6.0, None) == 0.0  # the arm never reaches the target
    assert speedup(None, 2.0) is None


def test_summary_on_hand_made_curves():
    results = {
        "raft++/uniform": [rows([0.30, 0.32, 0.34, 0.36], 100)] * 2,
        "raft++/gvm": [rows([0.30, 0.36, 0.36, 0.37], 150)] * 2,
    }
    targets, uniform, gvm = summarise(results, "raft++/uniform")
    assert targets["targets"] == {"best": pytest.approx(0.36), "half": pytest.approx(0.33)}
    assert uniform["speedup_steps_best"] == 1.0
    # best 0.36: uniform at iteration 3 (300 tokens), GVM at iteration 1 (150 tokens)
    assert gvm["speedup_steps_best"] == 3.0
    assert gvm["speedup_tokens_best"] == 2.0
    # half 0.33, interpolated: uniform at iteration 1.5 (0.32 -> 0.34; 150 tokens), GVM at 0.5
    # (from the base model's 0.30 to 0.36; 75 tokens)
    assert gvm["speedup_steps_half"] == pytest.approx(3.0)
    assert gvm["speedup_tokens_half"] == pytest.approx(2.0)
    assert gvm["speedup_steps_best_seeds"] == [3.0, 3.0]
    assert list(gvm["final"]) == [0.37, 0.37]
    # identical seeds: every bootstrap resample gives the same curves
    assert gvm["speedup_steps_best_interval"] == (3.0, 3.0)
    assert gvm["speedup_tokens_half_interval"] == pytest.approx((2.0, 2.0))
    # mean accuracy over iterations 1-3: uniform 0.34, GVM (0.36 + 0.36 + 0.37) / 3
    assert gvm["auc"] == pytest.approx([1.09 / 3] * 2)
    assert gvm["auc_diff_seeds"] == pytest.approx([1.09 / 3 - 0.34] * 2)
    assert gvm["auc_diff_interval"] == pytest.approx((1.09 / 3 - 0.34,) * 2)
    assert uniform["auc_diff_interval"] == (0.0, 0.0)


def with_groups(runs, groups):
    """Runs' rows with test/accuracy/<group> curves: groups[g][seed] lists its accuracies."""
    return [
        [
            row | {f"test/accuracy/{g}": curves[s][i] for g, curves in groups.items()}
            for i, row in enumerate(run)
        ]
        for s, run in enumerate(runs)
    ]


def test_accuracy_by_group_on_hand_made_curves(tmp_path):
    # Two seeds, iterations 0-2. Mean over iterations 1-2 of group a: uniform 0.2 and 0.4, GVM
    # 0.3 and 0.3 (differences +0.1, -0.1); of group b: uniform 0.5, 0.5, GVM 0.6, 0.7.
    uniform = with_groups(
        [rows([0.3, 0.3, 0.3], 100)] * 2,
        {"family=a": [[0.0, 0.1, 0.3], [0.0, 0.4, 0.4]], "family=b": [[0.5, 0.5, 0.5]] * 2},
    )
    gvm = with_groups(
        [rows([0.3, 0.4, 0.4], 100)] * 2,
        {
            "family=a": [[0.0, 0.2, 0.4], [0.0, 0.3, 0.3]],
            "family=b": [[0.5, 0.6, 0.6], [0.5, 0.7, 0.7]],
        },
    )
    results = {"raft++/uniform": uniform, "raft++/gvm": gvm}
    table = group_table(results, "raft++/uniform").splitlines()
    assert table[0] == "| group | raft++/uniform | raft++/gvm - uniform |"
    assert table[2].startswith("| family=a | 0.300 | +0.000 [-0.100, 0.100] (+0.100 -0.100) |")
    assert table[3].startswith("| family=b | 0.500 | +0.150 [0.100, 0.200] (+0.100 +0.200) |")
    assert "family=b | 0.500 | +0.150" in write_results(
        results, tmp_path, {"raft++": "raft++/uniform"}
    )
    assert group_table({"raft++/uniform": [rows([0.3, 0.4], 1)]}, "raft++/uniform") == ""
    older = results | {"raft++/knapsack": [rows([0.3, 0.4, 0.4], 100)] * 2}
    assert group_table(older, "raft++/uniform").splitlines()[3].endswith(" | not logged |")


def test_bootstrap_interval_of_a_paired_mean():
    # two seeds with differences 0.01 and 0.03: resampled means are 0.01, 0.02 or 0.03 with
    # probabilities 1/4, 1/2, 1/4, so the 2.5% and 97.5% percentiles are the extremes
    differences = np.array([0.01, 0.03])
    low, high = bootstrap_interval(lambda idx: float(differences[idx].mean()), 2)
    assert (low, high) == pytest.approx((0.01, 0.03))
    # many seeds: close to mean +- 1.96 standard errors
    rng = np.random.default_rng(0)
    values = rng.normal(0.05, 0.02, 40)
    low, high = bootstrap_interval(lambda idx: float(values[idx].mean()), 40)
    se = values.std(ddof=1) / np.sqrt(40)
    assert low == pytest.approx(values.mean() - 1.96 * se, abs=0.3 * se)
    assert high == pytest.approx(values.mean() + 1.96 * se, abs=0.3 * se)
    assert bootstrap_interval(lambda idx: 1.0, 1) is None  # one seed: no interval
    assert bootstrap_interval(lambda idx: None, 3) is None


def with_batches(runs, samples, accept_rate):
    """Runs whose every iteration trained on ``samples`` samples, ``accept_rate`` accepted."""
    return [
        [r | {"train/samples": samples, "train/accept_rate": accept_rate} for r in run]
        for run in runs
    ]


def test_sweep_reports_the_gain_per_value(tmp_path):
    uniform = with_batches([rows([0.30, 0.32, 0.34, 0.36], 100)] * 2, 64, 0.5)
    better = with_batches([rows([0.30, 0.36, 0.36, 0.37], 100)] * 2, 60, 0.4)
    worse = with_batches([rows([0.30, 0.30, 0.32, 0.34], 100)] * 2, 64, 0.25)
    sweeps = {
        "4": {"raft++/uniform": uniform, "raft++/gvm": better},
        "16": {"raft++/uniform": uniform, "raft++/gvm": worse},
    }
    text = write_sweep(sweeps, "num_generations", tmp_path)
    lines = text.splitlines()
    # mean accuracy over iterations 1-3: uniform 0.34, GVM 0.3633 at 4 and 0.32 at 16;
    # accepted samples per iteration: 60 * 0.4 = 24 and 64 * 0.25 = 16 against 64 * 0.5 = 32
    assert lines[2].startswith(
        "| 4 | raft++ | +0.023 [0.023, 0.023] | +0.023 +0.023 | 3.00x [3.00, 3.00]"
    )
    assert lines[2].endswith("| 24 / 32 | nan |")
    assert lines[3].startswith(
        "| 16 | raft++ | -0.020 [-0.020, -0.020] | -0.020 -0.020 | not reached"
    )
    assert lines[3].endswith("| 16 / 32 | nan |")
    assert (tmp_path / "sweep.md").read_text() == text
    assert (tmp_path / "sweep_num_generations.png").read_bytes()[:4] == b"\x89PNG"


def test_a_full_disk_leaves_the_previous_report_and_plot_whole(tmp_path, monkeypatch):
    """Before: plots were saved in place, so a full disk while a report was rewritten left a
    truncated PNG where the last good one was."""
    uniform = with_batches([rows([0.30, 0.32, 0.34, 0.36], 100)] * 2, 64, 0.5)
    gvm = with_batches([rows([0.30, 0.36, 0.36, 0.37], 100)] * 2, 60, 0.4)
    write_sweep({"4": {"raft++/uniform": uniform, "raft++/gvm": gvm}}, "k", tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["sweep.md", "sweep_k.png"]

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gvm_raft.fileio.os.fsync", disk_full)
    other = {"8": {"raft++/uniform": uniform, "raft++/gvm": uniform}}
    with pytest.raises(OSError, match="No space left"):
        write_sweep(other, "k", tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary left


def test_budget_by_accept_rate_on_hand_made_allocations(tmp_path):
    assert [accept_rate_bin(p) for p in (0.0, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1.0)] == [
        "0",
        "(0, 1/3]",
        "(0, 1/3]",
        "(1/3, 2/3]",
        "(1/3, 2/3]",
        "(2/3, 1)",
        "1",
    ]
    gvm = tmp_path / "gvm"
    gvm.mkdir()
    allocations = [
        {"iteration": 1, "accept_rate": [0.0, 0.25, 0.75, 1.0], "n_samples": [4, 20, 4, 4]},
        {"iteration": 2, "accept_rate": [0.0, 0.25, 0.5, 0.5], "n_samples": [4, 12, 8, 8]},
    ]
    (gvm / "allocations.jsonl").write_text("\n".join(json.dumps(r) for r in allocations))
    runs = {"raft++/gvm": [gvm], "raft++/none": [tmp_path / "missing"]}
    table = budget_by_accept_rate(arm_allocations(runs))
    # 64 samples on 8 prompts: p = 0 holds 8 samples and 2 prompts, (0, 1/3] 32 and 2,
    # (1/3, 2/3] 16 and 2, (2/3, 1) 4 and 1, 1 4 and 1; an arm without allocations is left out
    assert table.splitlines()[2:] == [
        "| raft++/gvm | 0.12 / 0.25 | 0.50 / 0.25 | 0.25 / 0.25 | 0.06 / 0.12 | 0.06 / 0.12 |"
    ]


def test_budget_by_accept_rate_puts_online_placeholders_apart(tmp_path):
    online, staged = tmp_path / "online", tmp_path / "staged"
    online.mkdir()
    staged.mkdir()
    (online / "config.yaml").write_text("online_stats: true\n")
    rows = [  # iteration 1: nothing visited yet, placeholders p = 1; iteration 2: prompt 0 again
        {"row_id": [0, 1], "accept_rate": [1.0, 1.0], "n_samples": [8, 8]},
        {"row_id": [2, 0], "accept_rate": [0.5, 0.0], "n_samples": [6, 2]},
    ]
    (online / "allocations.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (staged / "allocations.jsonl").write_text(json.dumps(rows[0]))
    table = budget_by_accept_rate(arm_allocations({"a/online": [online], "a/staged": [staged]}))
    # online: 24 samples on 4 prompts; only prompt 0's second visit (2 samples, p = 0) was
    # measured; the staged run's p = 1 estimates are its own stage 1's
    assert table.splitlines() == [
        "| arm | p_i 0 | p_i (0, 1/3] | p_i (1/3, 2/3] | p_i (2/3, 1) | p_i 1 | p_i unmeasured |",
        "|---|---|---|---|---|---|---|",
        "| a/online | 0.08 / 0.25 | 0.00 / 0.00 | 0.00 / 0.00 | 0.00 / 0.00 | 0.00 / 0.00 "
        "| 0.92 / 0.75 |",
        "| a/staged | 0.00 / 0.00 | 0.00 / 0.00 | 0.00 / 0.00 | 0.00 / 0.00 | 1.00 / 1.00 "
        "| 0.00 / 0.00 |",
    ]


def test_budget_by_group_on_hand_made_allocations(tmp_path):
    matched, plain = tmp_path / "matched", tmp_path / "plain"
    matched.mkdir()
    plain.mkdir()
    rows = [
        {"group": ["f=a", "f=b", "f=b", None], "n_samples": [0, 12, 4, 16]},
        {"group": ["f=a", "f=a", "f=c", "f=b"], "n_samples": [8, 0, 8, 16]},
    ]
    (matched / "allocations.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (plain / "allocations.jsonl").write_text(json.dumps({"n_samples": [8, 8]}))
    runs = {"raft++/gvm-matched": [matched], "raft++/uniform": [plain]}
    table = budget_by_group(arm_allocations(runs))
    # 7 grouped prompts, 48 of their samples: a holds 8 samples and 3 prompts, b 32 and 3,
    # c 8 and 1; the prompt without a group is left out, and so is the arm that logged none
    assert table.splitlines() == [
        "| arm | f=a | f=b | f=c |",
        "|---|---|---|---|",
        "| raft++/gvm-matched | 0.17 / 0.43 | 0.67 / 0.43 | 0.17 / 0.14 |",
    ]
    assert budget_by_group(arm_allocations({"raft++/uniform": [plain]})) == ""


def test_unknown_arm_is_named():
    with pytest.raises(ValueError, match="unknown arms gvm-fast"):
        make_arms(["raft++"], ["uniform"], ["gvm-fast"], 8, 64)


def test_ablations_run_for_the_algorithms_named_and_step_arms_match():
    arms = make_arms(
        ["raft++", "grpo"], ["uniform"], ["gvm-steps-x8", "uniform-steps-x8"], 8, 64, ["grpo"]
    )
    assert [a.label for a in arms] == [
        "raft++/uniform",
        "grpo/uniform",
        "grpo/gvm-steps-x8",
        "grpo/uniform-steps-x8",
    ]
    assert arms[2].overrides == {"allocation": "gvm", "mini_batch_size": 8}
    assert arms[3].overrides == {"allocation": "uniform", "mini_batch_size": 8}


# the ablations that apply to one algorithm: the 1/(n_i p_i) weights are RAFT's (accepted
# samples), rejected samples' scores GRPO's
ONE_ALGORITHM_ABLATIONS = {
    "uniform-weighted": "raft++",
    "gvm-weighted": "raft++",
    "matched-G=all": "grpo",
}


@pytest.mark.parametrize("algorithm", ["raft++", "grpo"])
@pytest.mark.parametrize("name", list(ablations(8, 64)))
def test_every_ablation_is_a_valid_benchmark_config(name, algorithm, tmp_path):
    """Each ablation's settings on the benchmark's (N/m = 8, k = 4 reused, mini-batch 64) pass
    the harness's check and reach the config as set: a bad arm fails in the suite, not when a
    benchmark starts. An arm of one algorithm is refused for the other with the setting to
    change."""
    [arm] = make_arms([algorithm], [], [name], 8, 64, [algorithm])
    base = bundled_config("convergence.yaml")
    if ONE_ALGORITHM_ABLATIONS.get(name, algorithm) != algorithm:
        with pytest.raises(ConfigError, match=r"set (grad_norm_samples|sample_weighting)="):
            _arm_config(arm, 0, base, tmp_path, world_overrides(tmp_path))
        return
    config = _arm_config(arm, 0, base, tmp_path, world_overrides(tmp_path))
    for key, value in arm.overrides.items():
        expected = yaml.safe_load(value) if isinstance(value, str) else value
        actual = getattr(config, key)
        assert (list(actual) if isinstance(actual, tuple) else actual) == expected, key


def test_tiny_benchmark_end_to_end(tiny_overrides, tmp_path):
    arms = make_arms(["raft++", "grpo"], ["uniform", "gvm"], ["gvm-online"], 4, 8)
    arms.insert(1, make_arms(["raft++"], ["uniform-aa"], [], 4, 8)[0])
    assert [a.label for a in arms] == [
        "raft++/uniform",
        "raft++/uniform-aa",
        "raft++/gvm",
        "raft++/gvm-online",
        "grpo/uniform",
        "grpo/gvm",
    ]
    overrides = tiny_overrides(max_completion_length=12)
    out = tmp_path / "bench"
    results = run_arms(arms, [0], bundled_config("convergence.yaml"), out, overrides, False)
    assert all(len(runs) == 1 and len(runs[0]) == 3 for runs in results.values())
    text = write_results(results, out, {"raft++": "raft++/uniform", "grpo": "grpo/uniform"})
    # each arm twice: in the results table and in the samples-by-acceptance table
    assert text.count("| raft++/") == 8 and text.count("| grpo/") == 4
    uniform_rows = [line for line in text.splitlines() if line.startswith("| raft++/uniform |")]
    shares = [cell.split(" / ") for cell in uniform_rows[1].split(" | ")[1:]]
    assert all(drawn == prompts.rstrip(" |") for drawn, prompts in shares)  # uniform: equal

    # the A/A arm: the same prompts in the same order, other samples
    def allocations(arm):
        path = out / "runs" / "raft++" / arm / "seed-0" / "allocations.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    same, other = allocations("uniform"), allocations("uniform-aa")
    assert [a["row_id"] for a in same] == [a["row_id"] for a in other]

    def generated(arm):
        return [row["tokens/cumulative"] for row in results[f"raft++/{arm}"][0][1:]]

    assert generated("uniform") != generated("uniform-aa")
    assert (out / "results.md").exists()
    for name in ("convergence_raftpp.png", "convergence_grpo.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    again = run_arms(arms[:1], [0], bundled_config("convergence.yaml"), out, overrides, False)
    assert again["raft++/uniform"] == results["raft++/uniform"]  # finished runs are only read
    untrained = make_arms(["raft++"], ["knapsack"], [], 4, 8)
    report_only = run_arms(
        arms + untrained, [0], bundled_config("convergence.yaml"), out, overrides, False, False
    )
    assert list(report_only) == list(results)  # nothing trained, the missing arm left out

    # another comparison with the same settings links the finished runs instead of training
    sweep = tmp_path / "sweep" / "num_generations=4"
    twins = run_arms(
        arms[:1],
        [0],
        bundled_config("convergence.yaml"),
        sweep,
        [*overrides, "num_generations=4"],
        False,
        False,
        reuse_from=[out],
    )
    assert twins == {"raft++/uniform": results["raft++/uniform"]}
    assert (sweep / "runs/raft++/uniform/seed-0").is_symlink()
    other = tmp_path / "other-lr"
    changed = run_arms(
        arms[:1],
        [0],
        bundled_config("convergence.yaml"),
        other,
        [*overrides, "learning_rate=0.5"],
        False,
        False,
        reuse_from=[out, sweep],
    )
    assert changed == {} and not (other / "runs").exists()  # other settings: not a twin
    # a finished run of another arm name with the same settings is a twin too
    renamed = tmp_path / "renamed"
    (renamed / "runs/raft++").mkdir(parents=True)
    shutil.copytree(out / "runs/raft++/uniform", renamed / "runs/raft++/uniform-steps-x1")
    linked = run_arms(
        arms[:1],
        [0],
        bundled_config("convergence.yaml"),
        tmp_path / "mini-batch",
        overrides,
        False,
        False,
        reuse_from=[renamed],
    )
    assert linked == {"raft++/uniform": results["raft++/uniform"]}
    link = tmp_path / "mini-batch/runs/raft++/uniform/seed-0"
    assert link.resolve() == (renamed / "runs/raft++/uniform-steps-x1/seed-0").resolve()

    # an archive (config and logs, no weights) reports as the runs do, and stands in for them
    (out / "runs/raft++/unfinished/seed-0").mkdir(parents=True)
    shutil.copy(
        out / "runs/raft++/uniform/seed-0/config.yaml", out / "runs/raft++/unfinished/seed-0"
    )
    archive = tmp_path / "archive"
    archived = archive_comparison(out, archive)
    assert len(archived) == len(results)  # the unfinished run is left out
    through_link = archive_comparison(tmp_path / "mini-batch", tmp_path / "archive-of-link")
    assert [(d / "metrics.jsonl").read_text() for d in through_link] == [
        (out / "runs/raft++/uniform/seed-0/metrics.jsonl").read_text()
    ]
    assert sorted(p.name for p in archive.glob("runs/*/*/*/*")) == sorted(
        ["config.yaml", "metrics.jsonl", "allocations.jsonl"] * len(archived)
    )
    read = run_arms(arms, [0], bundled_config("convergence.yaml"), archive, overrides, False, False)
    assert read == results
    baselines = {"raft++": "raft++/uniform", "grpo": "grpo/uniform"}
    assert write_results(read, archive, baselines) == text
    reused = run_arms(
        arms[:1],
        [0],
        bundled_config("convergence.yaml"),
        tmp_path / "later",
        overrides,
        False,
        False,
        reuse_from=[archive],
    )
    assert reused == {"raft++/uniform": results["raft++/uniform"]}


def test_compare_command_runs_paired_arms_and_reports(tiny_overrides, tmp_path, capsys):
    overrides = tiny_overrides(iterations=1)
    out = tmp_path / "compare"
    command = ["compare", str(bundled_config("convergence.yaml")), *overrides, "--out", str(out)]
    assert main([*command, "--arms", "uniform", "gvm", "--seeds", "0", "1"]) == 0
    text = (out / "results.md").read_text()
    assert "| raft++/uniform |" in text and "| raft++/gvm |" in text
    for arm in ("uniform", "gvm"):
        assert sorted(p.name for p in (out / "runs/raft++" / arm).iterdir()) == ["seed-0", "seed-1"]
    assert main([*command, "--arms", "gvm"]) == 2
    assert "--arms must include uniform" in capsys.readouterr().err


def test_the_harness_sets_seed_and_run_directory_over_the_config_file(tmp_path, monkeypatch):
    """A config file's seed and output_dir (the paper configs set one) once made every seed the
    same run, trained into the file's directory."""
    config_file = tmp_path / "paper.yaml"
    config_file.write_text("seed: 0\noutput_dir: elsewhere\niterations: 1\nallocation: gvm\n")
    trained = []

    def fake_train(config, progress=True):
        trained.append((config.seed, config.output_dir, config.resume))
        run_dir = tmp_path / config.output_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"iteration": i, "test/accuracy": 0.1 * i}) for i in range(2)]
        (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        return run_dir

    monkeypatch.setattr("gvm_raft.compare.train", fake_train)
    monkeypatch.chdir(tmp_path)
    arms = make_arms(["raft++"], ["uniform"], [], 8, 64)
    found = run_arms(arms, [0, 1], config_file, tmp_path / "out", progress=False)
    assert trained == [
        (0, str(tmp_path / "out/runs/raft++/uniform/seed-0"), True),
        (1, str(tmp_path / "out/runs/raft++/uniform/seed-1"), True),
    ]
    assert len(found["raft++/uniform"]) == 2
    with pytest.raises(ValueError, match="seed cannot be overridden in a comparison"):
        run_arms(arms, [0], config_file, tmp_path / "out", ["seed=3"], progress=False)
    with pytest.raises(ValueError, match="repeat a seed"):
        run_arms(arms, [0, 1, 0], config_file, tmp_path / "out", progress=False)
    refused = make_arms(["grpo"], ["uniform"], ["gvm-weighted"], 8, 64, ["grpo"])
    with pytest.raises(ConfigError, match=r"^arm grpo/gvm-weighted: sample_weighting="):
        run_arms(refused, [2], config_file, tmp_path / "out", progress=False)
    assert len(trained) == 2  # before: grpo/uniform seed 2 trained first, then the error


def test_report_only_never_writes_an_empty_or_mismatched_report(tiny_overrides, tmp_path, capsys):
    out = tmp_path / "compare"
    out.mkdir()
    (out / "results.md").write_text("earlier results\n")
    base = [str(bundled_config("convergence.yaml")), *tiny_overrides(iterations=1)]
    report_only = ["compare", *base, "--out", str(out), "--arms", "uniform", "--report-only"]
    assert main(report_only) == 2
    assert "nothing to report" in capsys.readouterr().err
    assert (out / "results.md").read_text() == "earlier results\n"
    assert main(["compare", *base, "--out", str(out), "--arms", "uniform", "--seeds", "0"]) == 0
    other = ["compare", *base, "learning_rate=0.5", "--out", str(out), "--arms", "uniform"]
    assert main([*other, "--report-only"]) == 2
    err = capsys.readouterr().err
    assert "trained with other settings (learning_rate)" in err and "nothing to report" in err
    assert "| raft++/uniform |" in (out / "results.md").read_text()
