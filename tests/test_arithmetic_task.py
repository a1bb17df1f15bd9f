"""The embedded world: generator, tokenizer, model round trips and the prepared directory."""

from __future__ import annotations

import dataclasses
import json
import random
import re

import numpy as np
import pytest
import sympy
import torch
from conftest import TINY_WORLD
from transformers import AutoModelForCausalLM, AutoTokenizer

from gvm_raft.rewards.arithmetic import arithmetic_reward
from gvm_raft.tasks.arithmetic import (
    CHAIN_LEVELS,
    DEFAULT_LEVELS,
    FAMILY_LEVELS,
    Level,
    format_prompt,
    generate_splits,
    in_symbols,
    make_problem,
    slip,
    with_step_errors,
)
from gvm_raft.tasks.demo_world import (
    FAMILIES_WORLD,
    format_world_report,
    headroom,
    prepare_demo_world,
    world_overrides,
)

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


STEP = re.compile(r"(-?\d+)([+*-])(\d+)=(-?\d+)")


def parse_steps(solution: str) -> tuple[list[tuple[int, str, int, int]], str]:
    *steps, boxed = solution.split("\n")
    parsed = []
    for line in steps:
        a, op, b, result = STEP.fullmatch(line).groups()
        parsed.append((int(a), op, int(b), int(result)))
    return parsed, boxed


def test_chain_levels_stay_in_range_and_every_step_is_right():
    rows = generate_splits({"train": 600}, seed=5, levels=CHAIN_LEVELS)["train"]
    for row in rows:
        steps, boxed = parse_steps(row["solution"])
        assert len(steps) == CHAIN_LEVELS[row["difficulty"] - 1].ops
        assert 0 <= steps[0][0] <= 9
        for (a, op, b, result), following in zip(steps, [*steps[1:], None], strict=True):
            assert op in "+-" and 0 <= b <= 9 and 0 <= result <= 19
            assert result == (a + b if op == "+" else a - b)
            if following:
                assert following[0] == result
        assert boxed == f"\\boxed{{{row['answer']}}}"
        assert int(sympy.sympify(row["problem"])) == int(row["answer"])


def test_families_write_the_same_chains_in_symbols_no_other_family_uses():
    rows = generate_splits({"train": 1200}, seed=4, levels=FAMILY_LEVELS)["train"]
    shared = set("()=\n\\boxed{}")
    tokens: dict[str, set[str]] = {}
    for row in rows:
        level = FAMILY_LEVELS[row["difficulty"] - 1]
        written = in_symbols(row, level)
        assert written["family"] == level.family and written["difficulty"] == row["difficulty"]
        back = str.maketrans(level.symbols, "0123456789+-*")
        for key in ("problem", "answer", "solution"):
            assert written[key].translate(back) == row[key]  # the decimal row, letter for letter
            tokens.setdefault(level.family, set()).update(set(written[key]) - shared)
        assert int(sympy.sympify(row["problem"])) == int(row["answer"])
    assert len(tokens) == 4
    for family, used in tokens.items():
        others = set().union(*(t for name, t in tokens.items() if name != family))
        assert used and not used & others, family
    assert {(level.family, level.ops) for level in FAMILY_LEVELS} == {
        (family, ops) for family in tokens for ops in (1, 2, 3)
    }
    errors = {(level.family, level.step_error, level.step_error_rate) for level in FAMILY_LEVELS}
    assert len(errors) == len({e for _, e, _ in errors}) == 4  # each family its own error
    assert min(rate for *_, rate in errors) > 0.5  # the wrong step is the likeliest one


@pytest.mark.parametrize(
    ("error", "solution"),
    [
        ("off-by-one", "7+5=13\n13-3=11\n\\boxed{11}"),
        ("other-op", "7+5=2\n2-3=5\n\\boxed{5}"),
        ("no-step", "7+5=7\n7-3=7\n\\boxed{7}"),
        ("operand", "7+5=5\n5-3=3\n\\boxed{3}"),
    ],
)
def test_each_misconception_writes_its_hand_computed_chain(error, solution):
    row = {"problem": "(7+5)-3", "answer": "9", "solution": "7+5=12\n12-3=9\n\\boxed{9}"}
    always = random.Random(0)
    always.random = lambda: 0.0  # every step errs
    assert with_step_errors(row, 0.5, always, error) == row | {"solution": solution}
    with pytest.raises(ValueError, match="step_error is one of"):
        make_problem(random.Random(0), Level(ops=1, digits=1, step_error="typo"), 1)


def test_a_families_world_verifies_its_answers_in_their_own_symbols(tmp_path):
    tiny = dataclasses.replace(
        TINY_WORLD, levels=FAMILIES_WORLD.levels, reward=FAMILIES_WORLD.reward
    )
    report = prepare_demo_world(tmp_path, tiny, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "data/test.jsonl").read_text().splitlines()]
    assert {row["family"] for row in rows} <= {level.family for level in FAMILY_LEVELS}
    by_family = report["test_headroom_by_family"]
    assert by_family["all"] == report["test_headroom"]["all"]
    assert sum(by_family[row["family"]]["prompts"] for row in rows) / len(rows) >= 1
    assert sum(v["prompts"] for k, v in by_family.items() if k != "all") == len(rows)
    assert "family prompts" in format_world_report(report, tmp_path)
    assert world_overrides(tmp_path)[-1] == "reward=exact"
    # a world not built here (archived runs are only read): the config's reward, or the default
    assert world_overrides(tmp_path / "elsewhere", FAMILIES_WORLD)[-1] == "reward=exact"
    assert world_overrides(tmp_path / "elsewhere")[-1] == "reward=arithmetic"


def test_slip_changes_exactly_one_digit_and_keeps_the_sign():
    rng = random.Random(0)
    for value in [0, 7, 10, 99, 100, -5, -42, 12345]:
        for _ in range(50):
            slipped = slip(value, rng)
            a, b = str(abs(value)), str(abs(slipped))
            assert len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1
            assert (slipped < 0) == (value < 0) or slipped == 0


def test_step_errors_carry_the_wrong_value_at_the_requested_rate():
    rows = generate_splits({"sft": 2000}, seed=1, levels=CHAIN_LEVELS)["sft"]
    assert [with_step_errors(r, 0.0, random.Random(0)) for r in rows] == rows
    rng = random.Random(0)
    slips = total = wrong_answers = 0
    for row in rows:
        noisy = with_step_errors(row, 0.25, rng)
        assert noisy["problem"] == row["problem"] and noisy["answer"] == row["answer"]
        steps, boxed = parse_steps(noisy["solution"])
        clean, _ = parse_steps(row["solution"])
        assert [(op, b) for _, op, b, _ in steps] == [(op, b) for _, op, b, _ in clean]
        for (a, op, b, result), following in zip(steps, [*steps[1:], None], strict=True):
            slips += result != (a + b if op == "+" else a - b)
            total += 1
            if following:
                assert following[0] == result  # the written value is carried on
        assert boxed == f"\\boxed{{{steps[-1][3]}}}"
        wrong_answers += boxed != f"\\boxed{{{row['answer']}}}"
    # binomial(total, 0.25): the standard deviation of the rate is below 0.006 here
    assert abs(slips / total - 0.25) < 0.03
    assert wrong_answers > 0
    with pytest.raises(ValueError, match="error_rate"):
        with_step_errors(rows[0], 1.0, rng)


@pytest.mark.parametrize(
    "level",
    [
        Level(ops=0, digits=1),
        Level(ops=1, digits=1, operators="+/"),
        Level(ops=1, digits=1, operators="+*", max_value=99),
        Level(ops=1, digits=2, operators="+-", max_value=50),
    ],
)
def test_invalid_levels_are_refused(level):
    with pytest.raises(ValueError, match="level"):
        generate_splits({"train": 1}, levels=(level,))


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


def test_headroom_table_matches_hand_computed_pass_at_k():
    # level 1: 0 and 2 correct of 4; level 2: 4 of 4. pass@2 of c=2, n=4: 1 - C(2,2)/C(4,2)
    table = headroom([1, 1, 2], np.array([0, 2, 4]), np.array([0, 1, 1]), samples=4)
    assert table["1"] == pytest.approx(
        {"prompts": 2, "pass@1": 0.25, "pass@2": (1 - 1 / 6) / 2, "pass@4": 0.5, "greedy": 0.5},
        abs=1e-4,
    )
    assert table["2"] == {"prompts": 1, "pass@1": 1.0, "pass@2": 1.0, "pass@4": 1.0, "greedy": 1.0}
    assert table["all"] == pytest.approx(
        {"prompts": 3, "pass@1": 0.5, "pass@2": (2 - 1 / 6) / 3, "pass@4": 2 / 3, "greedy": 2 / 3},
        abs=1e-4,
    )


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
    text = format_world_report(report, world)
    assert "acceptance rates of the train prompts" in text
    assert set(report["test_headroom"]["all"]) == {
        "prompts",
        "pass@1",
        "pass@2",
        "pass@4",
        "greedy",
    }
    assert report["test_headroom"]["all"]["prompts"] == 8
    assert "pass@1  pass@2  pass@4  greedy" in text

    again = prepare_demo_world(world, TINY_WORLD, progress=False)
    assert again["cached"] is True and again["parameters"] == report["parameters"]

    prepare_demo_world(tmp_path / "b", TINY_WORLD, progress=False)
    weights = "model/model.safetensors"
    assert (world / weights).read_bytes() == (tmp_path / "b" / weights).read_bytes()
    assert (world / "data/train.jsonl").read_text() == (tmp_path / "b/data/train.jsonl").read_text()
