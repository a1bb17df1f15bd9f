"""Answer extraction and the arithmetic verifier, including hostile model outputs."""

from __future__ import annotations

import sys

import pytest

from gvm_raft.rewards import load_reward
from gvm_raft.rewards.arithmetic import arithmetic_reward, exact_reward
from gvm_raft.rewards.boxed import last_boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{42}", "42"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\fbox{7}", "7"),
        ("\\boxed {3}", "3"),
        ("no box here", None),
        ("\\boxed{unclosed", None),
        ("\\boxed", None),
        ("\\boxedx{3}", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("completion", "answer", "reward"),
    [
        ("12+7=19\n\\boxed{19}", "19", 1.0),
        ("\\boxed{-38}", "-38", 1.0),
        ("\\boxed{ 019 }", "19", 1.0),
        ("\\boxed{+5}", "5", 1.0),
        ("\\boxed{18}", "19", 0.0),
        ("19", "19", 0.0),
        ("\\boxed{19.0}", "19", 0.0),
        ("\\boxed{1e3}", "1000", 0.0),
        ("\\boxed{19} \\boxed{20}", "19", 0.0),
    ],
)
def test_arithmetic_reward(completion, answer, reward):
    assert arithmetic_reward(completion, answer) == reward


@pytest.mark.parametrize(
    ("completion", "answer", "reward"),
    [
        ("bc&d=bf\n\\boxed{bf}", "bf", 1.0),
        ("\\boxed{ bf }", "bf", 1.0),
        ("\\boxed{bf}", " bf\n", 1.0),
        ("\\boxed{BF}", "bf", 0.0),  # exact: another family's digits are another answer
        ("\\boxed{019}", "19", 0.0),  # exact text, not the number
        ("bf", "bf", 0.0),
        ("\\boxed{bf} \\boxed{bg}", "bf", 0.0),
    ],
)
def test_exact_reward_compares_the_boxed_text(completion, answer, reward):
    assert exact_reward(completion, answer) == reward
    assert load_reward("exact")(["p"], [completion], [answer]) == [reward]


@pytest.mark.parametrize(
    ("text", "reward"),
    [
        ("\\boxed{" + "9" * 1_000_000 + "}", 0.0),
        ("\\boxed{" + "{" * 200_000, 0.0),
        ("x" * 5_000_000 + "\\boxed{1", 0.0),
        ("\\boxed{9**9**9**9}", 0.0),
        ("\ud800 invalid surrogate \\boxed{1}", 1.0),
    ],
)
def test_hostile_outputs_give_a_reward_without_crashing(text, reward):
    assert arithmetic_reward(text, "1") == reward


def test_a_custom_reward_file_in_the_working_directory_loads(tmp_path, monkeypatch):
    # before: importable only with PYTHONPATH=. (the console script's path is its own folder)
    (tmp_path / "my_reward_module.py").write_text(
        "def length(prompts, completions, **columns):\n"
        "    return [float(len(c)) for c in completions]\n"
        "NOT_A_FUNCTION = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_reward("my_reward_module:length")(["p"], ["abc"]) == [3.0]
    with pytest.raises(ValueError, match="NOT_A_FUNCTION' is a int, not a function"):
        load_reward("my_reward_module:NOT_A_FUNCTION")
    with pytest.raises(ValueError, match=r"a \.py file in the working directory"):
        load_reward("no_such_reward_module:fn")
