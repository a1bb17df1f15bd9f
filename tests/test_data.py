"""Datasets in every supported format, answer normalisation, prompt rendering, and one training
iteration through the real-math path (chat template + math-verify) on a tiny chat model."""

from __future__ import annotations

import json
import math
import warnings

import datasets
import pytest
from transformers import AutoTokenizer

from gvm_raft.cli import main
from gvm_raft.config import GVMConfig
from gvm_raft.data import load_prompts, normalise_answer, render_prompt, rows_of
from gvm_raft.trainer import train

RECORDS = [
    {"problem": "What is $1/2 + 1/4$?", "answer": "\\frac{3}{4}", "level": 1},
    {"problem": "Compute $3 \\times 9$.", "answer": 27.0, "level": 1},
    {"problem": "Name the roots of $x^2 = 4$.", "answer": ["2", "-2"], "level": 2},
    {"problem": "Simplify $0.5 + 0.25$.", "answer": 0.75, "level": 2},
]


def write_all_formats(directory, records):
    dataset = datasets.Dataset.from_list([r | {"answer": json.dumps(r["answer"])} for r in records])
    paths = {"jsonl": directory / "d.jsonl", "json": directory / "d.json"}
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in records))
    paths["json"].write_text(json.dumps(records))
    paths["parquet"] = directory / "d.parquet"
    dataset.to_parquet(str(paths["parquet"]))
    paths["saved"] = directory / "saved"
    dataset.save_to_disk(str(paths["saved"]))
    return paths


def test_every_format_loads_the_same_rows(tmp_path):
    paths = write_all_formats(tmp_path, RECORDS)
    expected = ["\\frac{3}{4}", "27", "2, -2", "0.75"]
    for kind in ("jsonl", "json"):
        rows = load_prompts(paths[kind])
        assert [r.answer for r in rows] == expected, kind
        assert [r.problem for r in rows] == [r["problem"] for r in RECORDS]
        assert rows[2].row_id == 2 and rows[2].columns["level"] == 2
    for kind in ("parquet", "saved"):  # answers stored as JSON text there: one string column
        rows = load_prompts(paths[kind])
        assert [r.problem for r in rows] == [r["problem"] for r in RECORDS], kind
        assert rows[1].answer == "27.0" and rows[0].answer == '"\\\\frac{3}{4}"'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (27.0, "27"),
        (0.5, "0.5"),
        (3, "3"),
        (["2", 3.0], "2, 3"),
        ("  x+1 ", "x+1"),
        ("Worked: so $s = 2$, giving \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        (None, None),
        (math.nan, None),
        ("", None),
        ([], None),
        (True, None),
    ],
)
def test_answer_normalisation(raw, expected):
    assert normalise_answer(raw) == expected


def test_rows_without_answers_are_skipped_with_a_count(tmp_path):
    path = tmp_path / "d.jsonl"
    records = [*RECORDS, {"problem": "No answer", "answer": None}, {"problem": "", "answer": "1"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.warns(UserWarning, match="skipped 2 rows"):
        rows = load_prompts(path)
    assert len(rows) == 4


def test_bad_datasets_name_the_fix(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "1"}) + "\n")
    with pytest.raises(ValueError, match=r"no column 'problem' .*question.*prompt_column"):
        load_prompts(path)
    assert load_prompts(path, prompt_column="question")[0].problem == "q"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_prompts(tmp_path / "missing.jsonl")
    (tmp_path / "runs").mkdir()
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a local path, not a hub name
        load_prompts(tmp_path / "runs" / "math")
    (tmp_path / "d.csv").write_text("problem,answer\n")
    with pytest.raises(ValueError, match=r"use \.jsonl, \.json, \.parquet"):
        load_prompts(tmp_path / "d.csv")


def python_forms(records):
    """The forms a Python API user hands over: a Dataset, an IterableDataset, a list, a tuple,
    a pandas DataFrame and a dict of columns, all of the same rows."""
    import pandas as pd

    as_text = [r | {"answer": str(r["answer"])} for r in records]  # one arrow type per column
    return {
        "Dataset": datasets.Dataset.from_list(as_text),
        "IterableDataset": datasets.Dataset.from_list(as_text).to_iterable_dataset(),
        "list": list(as_text),
        "tuple": tuple(as_text),
        "DataFrame": pd.DataFrame(as_text),
        "dict of columns": {key: [r[key] for r in as_text] for key in as_text[0]},
    }


def test_every_python_form_of_a_dataset_gives_the_same_rows():
    # before: a DataFrame or a dict of columns raised KeyError: 0
    for name, dataset in python_forms(RECORDS).items():
        rows = rows_of(dataset, "problem", "answer", "train_dataset")
        assert [r.problem for r in rows] == [r["problem"] for r in RECORDS], name
        assert [r.answer for r in rows] == [str(r["answer"]) for r in RECORDS], name
        assert rows[3].columns["level"] == 2, name


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ((r for r in RECORDS), "is of type generator: pass a datasets.Dataset"),
        ("problem", "is of type str: pass a datasets.Dataset"),
        (["1+1", "2+2"], "row 0 is of type str, not a dict of columns"),
        ([], "is empty: it holds no rows"),
        ({"problem": ["1+1"], "answer": "2"}, "is a dict but not of equal-length column lists"),
        (
            datasets.DatasetDict({"test": datasets.Dataset.from_list([{"problem": "q"}])}),
            r"is a DatasetDict \(splits: test\): pass one split, e.g. dataset\['test'\]",
        ),
    ],
)
def test_a_dataset_in_no_known_form_is_refused_by_name(dataset, message):
    # before: TypeError (no len), KeyError, or "no column 'problem' (columns: 1, +, 1)"
    with pytest.raises(ValueError, match=f"dataset train_dataset:? {message}"):
        rows_of(dataset, "problem", "answer", "train_dataset")


def test_rows_missing_a_column_are_skipped_with_a_count():
    # before: KeyError: 'answer' from the second row
    with pytest.warns(UserWarning, match="skipped 1 rows"):
        rows = rows_of([{"problem": "1+1", "answer": "2"}, {"problem": "3+3"}], "problem", "answer")
    assert [r.problem for r in rows] == ["1+1"]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_dataset_file_is_named(tmp_path, content):
    # before: StopIteration (0 bytes) or 'Instruction "train" corresponds to no data!'
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=f"dataset {path} is empty: it holds no rows"):
        load_prompts(path)


def test_a_broken_dataset_line_is_named_by_file_and_line(tmp_path):
    # before: "... position 31" with neither the file nor the line
    path = tmp_path / "d.jsonl"
    good = json.dumps({"problem": "1+1", "answer": "2"})
    path.write_text(f"{good}\n\n{good}\n{{'problem': 'single quotes'}}\n{good}\n")
    with pytest.raises(ValueError, match=f"dataset {path}:4: not a JSON line"):
        load_prompts(path)


def test_prompt_rendering(chat_model_dir, char_tokenizer):
    tokenizer = AutoTokenizer.from_pretrained(chat_model_dir)
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    chat = render_prompt(tokenizer, "What is 2+2?", "auto", system)
    assert chat == f"<|im_start|>user\nWhat is 2+2? {system}<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(tokenizer, "2+2", "plain") == "2+2\n"
    assert render_prompt(tokenizer, "2+2", "Q: {problem}\nA:") == "Q: 2+2\nA:"
    assert render_prompt(char_tokenizer, "2+2", "auto") == "2+2\n"  # no chat template
    with pytest.raises(ValueError, match="no chat template"):
        render_prompt(char_tokenizer, "2+2", "chat")
    with pytest.raises(ValueError, match="format string with \\{problem\\}"):
        render_prompt(tokenizer, "2+2", "Question:")


def test_one_iteration_through_the_real_math_path(chat_model_dir, tmp_path):
    data = tmp_path / "math.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    config = GVMConfig(
        model_name_or_path=str(chat_model_dir),
        train_file=str(data),
        test_file=str(data),
        output_dir=str(tmp_path / "run"),
        reward="math",
        prompt_template="chat",
        algorithm="grpo",
        iterations=1,
        prompts_per_iteration=4,
        num_generations=3,
        stage1_samples=2,
        max_completion_length=8,
        mini_batch_size=6,
        micro_batch_size=6,
        eval_samples=2,
        learning_rate=1e-4,
    )
    run_dir = train(config, progress=False)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["samples/stage1"] == 8 and rows[1]["samples/stage2"] == 4
    assert rows[1]["train/optimizer_steps"] == 2
    assert 0.0 <= rows[1]["test/accuracy"] <= 1.0
    assert (run_dir / "checkpoints" / "iteration-000001" / "model" / "tokenizer.json").exists()


def test_the_cli_prints_a_warning_as_one_line_without_its_source(tmp_path, monkeypatch):
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after
    path = tmp_path / "d.jsonl"
    records = [*RECORDS, {"problem": "No answer", "answer": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.warns(UserWarning, match="skipped 1 rows") as caught:
        assert main(["eval", str(tmp_path / "no-model"), str(path)]) == 2
    shown = warnings.formatwarning(caught[0].message, UserWarning, "data.py", 91, "warn(...)")
    assert shown == f"warning: {caught[0].message}\n"
