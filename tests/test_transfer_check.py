"""benchmarks/transfer_check.py's split of a world's rows into one file per group."""

from __future__ import annotations

import sys
from pathlib import Path

from gvm_raft.fileio import read_jsonl, write_jsonl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from transfer_check import split_by_group


def test_rows_are_split_by_family_where_there_is_one_else_by_level(tmp_path):
    rows = [
        {"problem": "a", "difficulty": 1, "family": "lower"},
        {"problem": "b", "difficulty": 2, "family": "upper"},
        {"problem": "c", "difficulty": 1, "family": "lower"},
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    files = split_by_group(tmp_path / "train.jsonl", tmp_path / "out")
    assert {g: [r["problem"] for r in read_jsonl(f)] for g, f in files.items()} == {
        "lower": ["a", "c"],
        "upper": ["b"],
    }
    write_jsonl(tmp_path / "test.jsonl", [{"problem": "d", "difficulty": 3}])
    assert list(split_by_group(tmp_path / "test.jsonl", tmp_path / "out")) == ["3"]
