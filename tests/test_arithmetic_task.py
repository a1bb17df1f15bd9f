"""The embedded world: generator, tokenizer, model round trips and the prepared directory."""

from __future__ import annotations

import json
import re

import pytest
import sympy
import torch
from conftest import TINY_WORLD
from transformers import AutoModelForCausalLM, AutoTokenizer

from gvm_raft.rewards.arithmetic import arithmetic_reward
from gvm_raft.tasks.arithmetic import DEFAULT_LEVELS, Level, format_prompt, generate_splits
from gvm_raft.tasks.demo_world import format_world_report, prepare_demo_world

SIZES = {"test": 150, "train": 300, "sft": 3000}


@pytest.fixture(scope="module")
def splits():
    return generate_splits(SIZES, seed=3)


def test_generator_is_deterministic(splits):
    assert generate_splits(SIZES, seed=3) == splits
    assert generate_splits(SIZES, seed=4)["train"] != splits["train"]


def test_splits_have_requested_sizes_and_are_disjoint(splits):
    assert {name: len(rows) for name, rows in splits.items()} == SIZES
    problems = {name: {row["problem"] for row in rows} for name, rows in splits.items()}
    assert sum(len(p) for p in problems.values()) == sum(SIZES.values())
    assert not problems["test"] & problems["train"]
    assert not problems["test"] & problems["sft"]
    assert not problems["train"] & problems["sft"]


def test_every_answer_and_step_is_right(splits):
    step = re.compile(r"(-?\d+)([+*-])(\d+)=(-?\d+)")
    for rows in splits.values():
        for row in rows:
            assert int(sympy.sympify(row["problem"])) == int(row["answer"])
            assert arithmetic_reward(row["solution"], row["answer"]) == 1.0
            *steps, boxed = row["solution"].split("\n")
            assert boxed == f"\\boxed{{{row['answer']}}}"
            level = DEFAULT_LEVELS[row["difficulty"] - 1]
            assert len(steps) == level.ops
            for line in steps:
                a, op, b, result = step.fullmatch(line).groups()
                assert int(sympy.sympify(f"({a}){op}({b})")) == int(result)


def test_too_small_levels_give_a_clear_error():
    with pytest.raises(ValueError, match="too few distinct problems"):
        generate_splits({"train": 1000}, levels=(Level(ops=1, digits=1),))


def test_tokenizer_round_trips_all_generated_text(splits, char_tokenizer):
    for rows in splits.values():
        for row in rows:
            text = format_prompt(row["problem"]) + row["solution"]
            ids = char_tokenizer(text)["input_ids"]
            assert ids[0] == char_tokenizer.bos_token_id
            assert char_tokenizer.unk_token_id not in ids
            assert char_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_model_and_tokenizer_round_trip_through_auto_classes(tmp_path, tiny_model, char_tokenizer):
    tiny_model.save_pretrained(tmp_path)
    char_tokenizer.save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    text = "((12+7)*3)-5\n12+7=19"
    assert tokenizer(text)["input_ids"] == char_tokenizer(text)["input_ids"]
    assert tokenizer.padding_side == "left"
    ids = torch.tensor([char_tokenizer(text)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, tiny_model(ids).logits)


def test_prepare_demo_world_builds_reuses_and_is_deterministic(tmp_path):
    report = prepare_demo_world(tmp_path / "a", TINY_WORLD, progress=False)
    assert report["cached"] is False
    world = tmp_path / "a"
    for name, size in [("sft", 300), ("train", 16), ("test", 8)]:
        rows = (world / "data" / f"{name}.jsonl").read_text().splitlines()
        assert len(rows) == size
        assert set(json.loads(rows[0])) == {"problem", "answer", "difficulty", "solution"}
    assert (
        AutoModelForCausalLM.from_pretrained(world / "model").num_parameters()
        == report["parameters"]
    )
    assert sum(report["train_accept_rate_histogram"]["counts"]) == 16
    assert "acceptance rates of the train prompts" in format_world_report(report, world)

    again = prepare_demo_world(world, TINY_WORLD, progress=False)
    assert again["cached"] is True and again["parameters"] == report["parameters"]

    prepare_demo_world(tmp_path / "b", TINY_WORLD, progress=False)
    weights = "model/model.safetensors"
    assert (world / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    assert (world / "data/train.jsonl").read_text() == (tmp_path / "b/data/train.jsonl").read_text()
