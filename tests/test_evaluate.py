"""Evaluation metrics against brute force and hand-made outputs; ``gvm-raft eval``."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
import torch

from gvm_raft.cli import main
from gvm_raft.data import PromptRow, check_group_column
from gvm_raft.errors import DataError
from gvm_raft.evaluate import (
    benchmark_table,
    combine_shares,
    evaluate,
    evaluate_benchmarks,
    group_counts,
    pass_at_k,
)
from gvm_raft.rewards import load_reward
from gvm_raft.rollout.base import Sample, SamplingParams


@pytest.mark.parametrize("n", range(1, 7))
def test_pass_at_k_equals_the_fraction_of_k_subsets_with_a_correct_sample(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(combinations(outcomes, k))
            expected = sum(any(s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(expected)
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(3, 1, 4)


class ScriptedBackend:
    """Returns fixed completions: the first ``count`` of each prompt's script."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = scripts

    def generate(self, prompts, counts, params, seed):
        return [
            [Sample(i, [], [1], text, [0.0], "stop") for text in self.scripts[prompt][:count]]
            for i, (prompt, count) in enumerate(zip(prompts, counts, strict=True))
        ]


ROWS = [PromptRow(0, "2+3", "5", {}), PromptRow(1, "3+4", "7", {})]
SCRIPTS = {
    "2+3": ["\\boxed{5}", "\\boxed{4}", "so \\boxed{ 4 }"],
    "3+4": ["\\boxed{7}", "\\boxed{7}", "no box"],
}


def evaluate_scripted(rows, **options):
    """``evaluate`` on the scripted outputs, 3 samples per prompt, the arithmetic reward."""
    prompts = [row.problem for row in rows]
    reward = load_reward("arithmetic")
    backend = ScriptedBackend(SCRIPTS)
    return evaluate(backend, rows, prompts, reward, 3, SamplingParams(), 0, **options)


def test_evaluate_on_hand_made_outputs():
    metrics = evaluate_scripted(ROWS)
    # Prompt 1: 1 of 3 correct, majority answer 4 (wrong). Prompt 2: 2 of 3, majority 7 (right).
    # Greedy (the first completion) is right on both.
    # Per-prompt accuracies 1/3 and 2/3: standard deviation sqrt(2 / 36), over sqrt(2) prompts.
    assert metrics == {
        "accuracy": pytest.approx((1 / 3 + 2 / 3) / 2),
        "accuracy_se": pytest.approx(1 / 6),
        "pass@3": 1.0,
        "maj@3": 0.5,
        "accuracy_greedy": 1.0,
    }


def test_each_group_gets_the_accuracy_of_its_own_prompts():
    rows = [PromptRow(0, "2+3", "5", {"level": 1}), PromptRow(1, "3+4", "7", {"level": 2})]
    metrics = evaluate_scripted(rows, greedy=False, group_column="level")
    assert metrics["accuracy/level=1"] == pytest.approx(1 / 3)
    assert metrics["accuracy/level=2"] == pytest.approx(2 / 3)
    assert group_counts("level", rows + rows[:1]) == {"accuracy/level=1": 2, "accuracy/level=2": 1}
    assert group_counts(None, rows) == {}


def test_shares_combine_by_their_prompts_and_groups_by_their_own_counts():
    # Process 0: 1 prompt of group a (accuracy 1). Process 1: 3 of group a (accuracy 0) and 2
    # of group b (accuracy 0.5). Whole set: a = 1/4, b = 0.5, all = (1 + 0 + 1) / 6 = 1/3.
    shares = [
        ({"prompts": 1, "accuracy/g=a": 1}, {"accuracy": 1.0, "accuracy/g=a": 1.0}),
        (
            {"prompts": 5, "accuracy/g=a": 3, "accuracy/g=b": 2},
            {"accuracy": 0.2, "accuracy/g=a": 0.0, "accuracy/g=b": 0.5},
        ),
        ({"prompts": 0}, {}),
    ]
    combined = combine_shares(shares)
    assert combined == pytest.approx({"accuracy": 1 / 3, "accuracy/g=a": 0.25, "accuracy/g=b": 0.5})


def test_a_group_column_some_rows_lack_is_refused_by_name():
    rows = [PromptRow(0, "2+3", "5", {"level": 1}), PromptRow(1, "3+4", "7", {"level": None})]
    with pytest.raises(DataError, match=r"eval_group_column='level': 1 of the 2 rows of t.jsonl"):
        check_group_column("level", rows, "t.jsonl")
    check_group_column("level", rows[:1], "t.jsonl")
    check_group_column(None, rows, "t.jsonl")


def test_benchmarks_are_averaged_without_weights():
    results = evaluate_benchmarks(
        ScriptedBackend(SCRIPTS),
        {"one": ROWS[:1], "both": ROWS},
        lambda problem: problem,
        load_reward("arithmetic"),
        samples=2,
        params=SamplingParams(),
        seed=0,
    )
    assert results["one"]["accuracy"] == pytest.approx(0.5)
    assert results["both"]["accuracy"] == pytest.approx(0.75)
    assert results["average"]["accuracy"] == pytest.approx(0.625)
    assert results["average"]["prompts"] == 3
    table = benchmark_table(results).splitlines()
    # "one": a single prompt (standard error 0); "both": accuracies 1/2 and 1: sd sqrt(1/8)
    assert results["both"]["accuracy_se"] == pytest.approx(0.25)
    assert results["average"]["accuracy_se"] == pytest.approx(np.sqrt(0.25**2) / 2)
    assert table[0] == (
        "| benchmark | prompts | accuracy | accuracy_se | pass@2 | maj@2 | accuracy_greedy |"
    )
    assert table[-1].startswith("| average | 3 | 0.625 |")


def test_groups_a_benchmark_lacks_are_blank_and_left_out_of_the_average():
    rows = [PromptRow(0, "2+3", "5", {"level": 1}), PromptRow(1, "3+4", "7", {"level": 2})]
    results = evaluate_benchmarks(
        ScriptedBackend(SCRIPTS),
        {"one": rows[:1], "both": rows},
        lambda problem: problem,
        load_reward("arithmetic"),
        samples=2,
        params=SamplingParams(),
        seed=0,
        greedy=False,
        group_column="level",
    )
    assert results["both"]["accuracy/level=2"] == pytest.approx(1.0)
    assert results["average"]["accuracy/level=1"] == pytest.approx(0.5)
    assert "accuracy/level=2" not in results["average"]
    table = benchmark_table(results).splitlines()
    assert table[0].endswith("| accuracy/level=1 | accuracy/level=2 |")
    assert table[2].endswith("| 0.500 |  |") and table[3].endswith("| 0.500 | 1.000 |")


def test_eval_command_on_two_files(tiny_world, tmp_path, capsys):
    data = tiny_world / "data"
    out = tmp_path / "results.json"
    args = [str(tiny_world / "model"), str(data / "test.jsonl"), str(data / "train.jsonl")]
    options = ["--reward", "parity_reward:even_code_point_sum", "--prompt-template", "plain"]
    options += ["--max-completion-length", "12", "--eval-samples", "3", "--eval-max-prompts", "5"]
    assert main(["eval", *args, *options, "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert list(results) == ["test", "train", "average"]
    assert results["test"]["prompts"] == 5 and results["average"]["prompts"] == 10
    for key in ("accuracy", "pass@3", "maj@3", "accuracy_greedy"):
        mean = (results["test"][key] + results["train"][key]) / 2
        assert results["average"][key] == pytest.approx(mean)
        assert 0 <= results["test"][key] <= 1
    assert results["test"]["accuracy"] <= results["test"]["pass@3"]
    assert "| average | 10 |" in capsys.readouterr().out

    assert main(["eval", args[0], str(data / "missing.jsonl")]) == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err

    grouped = [*options, "--eval-group-column", "difficulty", "--out", str(out)]
    assert main(["eval", args[0], args[1], *grouped]) == 0
    test = json.loads(out.read_text())["test"]
    levels = [json.loads(line)["difficulty"] for line in (data / "test.jsonl").open()][:5]
    by_group = sum(test[f"accuracy/difficulty={d}"] * levels.count(d) for d in set(levels))
    assert by_group / 5 == pytest.approx(test["accuracy"])
    assert main(["eval", args[0], args[1], *options, "--eval-group-column", "family"]) == 2
    assert "eval_group_column='family': 5 of the 5 rows of" in capsys.readouterr().err


def test_eval_in_bfloat16_with_a_chosen_attention_kernel(tiny_world, tmp_path, monkeypatch):
    import gvm_raft.models

    loaded = []
    load = gvm_raft.models.load_causal_lm

    def spy(*args, **kwargs):
        model = load(*args, **kwargs)
        loaded.append((model.dtype, model.config._attn_implementation))
        return model

    monkeypatch.setattr(gvm_raft.models, "load_causal_lm", spy)
    out = tmp_path / "results.json"
    options = ["--reward", "arithmetic", "--prompt-template", "plain"]
    options += ["--max-completion-length", "40", "--eval-samples", "2", "--eval-max-prompts", "8"]
    options += ["--no-eval-greedy", "--out", str(out)]
    options += ["--mixed-precision", "bf16", "--attn-implementation", "eager"]
    data = str(tiny_world / "data/test.jsonl")
    assert main(["eval", str(tiny_world / "model"), data, *options]) == 0
    results = json.loads(out.read_text())["test"]
    assert results["prompts"] == 8 and 0 <= results["accuracy"] <= results["pass@2"] <= 1
    assert loaded == [(torch.bfloat16, "eager")]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--eval-max-prompts", "-1", "eval_max_prompts must be >= 1 (and finite); got -1"),
        ("--eval-max-prompts", "0", "eval_max_prompts must be >= 1 (and finite); got 0"),
        ("--rollout-batch-size", "0", "rollout_batch_size must be >= 1 (and finite); got 0"),
        ("--eval-samples", "-2", "eval_samples must be >= 0 (and finite); got -2"),
        ("--eval-temperature", "-1", "eval_temperature must be >= 0 (and finite); got -1"),
        ("--mixed-precision", "fp8", "mixed_precision must be one of no, bf16, fp16; got 'fp8'"),
    ],
)
def test_eval_refuses_bad_settings_by_their_training_name(option, value, message, capsys):
    # before: -1 evaluated N-1 prompts, 0 printed NaNs, a batch size of 0 a range() error;
    # the model and data do not exist: the settings are checked first
    assert main(["eval", "no-model", "no-data.jsonl", option, value]) == 2
    assert f"gvm-raft eval: error: {message}" in capsys.readouterr().err


def test_eval_takes_its_defaults_from_a_run_config(tiny_config, tmp_path, capsys):
    from gvm_raft.config import save_config

    save_config(tiny_config(eval_samples=0, eval_greedy=False), tmp_path / "config.yaml")
    args = ["eval", "no-model", "no-data.jsonl", "--config", str(tmp_path / "config.yaml")]
    assert main(args) == 2
    assert "eval_samples must be > 0 unless eval_greedy is on" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--max-completion-length", "x"])
    assert "argument --max-completion-length: invalid int value: 'x'" in capsys.readouterr().err


def test_eval_and_stats_refuse_an_output_that_cannot_be_a_file_before_any_work(tmp_path, capsys):
    """Before: eval ran the whole evaluation, then failed with '[Errno 21] Is a directory'."""
    folder = tmp_path / "results"
    folder.mkdir()
    (tmp_path / "plain").write_text("")
    for out, message in [
        (folder, "is a directory: give a file name inside it"),
        (tmp_path / "plain" / "r.json", "is a file, not a directory"),
    ]:
        assert main(["eval", "no-model", "no-data.jsonl", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert main(["stats", "no-run", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
        assert main(["allocate", "no-stats.jsonl", "--budget", "4", "--out", str(out)]) == 2
        assert message in capsys.readouterr().err


def test_eval_refuses_a_file_given_twice_and_a_directory_that_is_no_dataset(tmp_path, capsys):
    # before: a file given twice was evaluated twice and reported once; a plain directory gave
    # datasets' "Directory ... is neither a `Dataset` directory nor a `DatasetDict` directory"
    data = tmp_path / "t.jsonl"
    data.write_text('{"problem": "1+1", "answer": "2"}\n')
    assert main(["eval", "no-model", str(data), str(data)]) == 2
    assert f"{data} given more than once: name each benchmark file once" in capsys.readouterr().err
    (tmp_path / "folder").mkdir()
    assert main(["eval", "no-model", str(tmp_path / "folder")]) == 2
    assert "is a directory but not one saved by datasets' save_to_disk" in capsys.readouterr().err
