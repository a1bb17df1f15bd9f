"""Faults that must stop a run loudly and lose nothing: a NaN reward (the run stops at the batch
that produced it, naming the reward, its last checkpoint the last good one), a non-finite
gradient (the optimizer step refused), and reward functions or datasets the run cannot use
(refused by name before any update)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from gvm_raft.data import PromptRow
from gvm_raft.errors import DataError, NonFiniteError, UserError
from gvm_raft.estep import score
from gvm_raft.sharding import optimizer_step
from gvm_raft.trainer import train

FLAKY_REWARD = '''
import math
from pathlib import Path

from gvm_raft.rewards import arithmetic_reward_fn


def flaky(prompts, completions, answer, **columns):
    """The arithmetic reward, but NaN for the first completion once the marker file exists."""
    rewards = arithmetic_reward_fn(prompts, completions, answer)
    if Path("poison").exists():
        rewards[0] = math.nan
    return rewards
'''


def weights_of(run_dir) -> dict[str, torch.Tensor]:
    latest = (run_dir / "checkpoints/latest").read_text().strip()
    return load_file(run_dir / "checkpoints" / latest / "model/model.safetensors")


def test_a_nan_reward_stops_the_run_naming_the_reward_and_keeps_the_last_good_checkpoint(
    tiny_config, tmp_path, monkeypatch
):
    """Before: one NaN reward made every parameter NaN in the saved checkpoint, exit 0."""
    (tmp_path / "flaky_reward.py").write_text(FLAKY_REWARD)
    monkeypatch.chdir(tmp_path)
    config = tiny_config("nan", reward="flaky_reward:flaky", iterations=1, eval_greedy=False)
    run_dir = train(config, progress=False)
    good = weights_of(run_dir)
    assert all(torch.isfinite(t).all() for t in good.values())
    (tmp_path / "poison").write_text("")
    resumed = tiny_config(
        "nan", reward="flaky_reward:flaky", iterations=2, eval_greedy=False, resume=True
    )
    with pytest.raises(
        NonFiniteError, match=r"iteration 2: the reward function flaky returned nan"
    ):
        train(resumed, progress=False)
    assert (run_dir / "checkpoints/latest").read_text().strip() == "iteration-000001"
    after = weights_of(run_dir)
    assert after.keys() == good.keys()
    assert all(torch.equal(after[k], good[k]) for k in good)


def test_a_non_finite_gradient_never_reaches_the_optimizer():
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.ones(1, 3)).sum().backward()
    model.weight.grad[0, 0] = math.inf
    with pytest.raises(NonFiniteError, match="the gradient norm is inf"):
        optimizer_step(accelerator, model, optimizer, 1.0)
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))
    assert all(p.grad is None for p in model.parameters())
    assert not optimizer.state  # AdamW's moments never saw the gradient


ROWS = [PromptRow(0, "1 + 1", "2", {"problem": "1 + 1", "answer": "2"})]


def no_kwargs(prompts, completions):
    return [1.0] * len(completions)


def scalar(prompts, completions, **columns):
    return 1.0


def generator(prompts, completions, **columns):
    return (1.0 for _ in completions)


def text(prompts, completions, **columns):
    return ["1"] * len(completions)


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (no_kwargs, r"reward no_kwargs cannot take TRL's arguments .*give it a \*\*kwargs"),
        (scalar, "reward scalar returned a float: return a list with one reward per completion"),
        (generator, "reward generator returned a generator: return a list"),
        (text, r"reward text returned '1' for completion 0: rewards must be numbers"),
    ],
)
def test_a_reward_function_of_the_wrong_shape_is_named_with_the_fix(fn, message):
    """Before: 'unexpected keyword argument' or "object of type 'float' has no len()"."""
    with pytest.raises(UserError, match=message):
        score(fn, ROWS, [0, 0], ["a", "b"])
    assert score(lambda prompts, completions, **kw: np.ones(2), ROWS, [0, 0], ["a", "b"]) == [
        1.0,
        1.0,
    ]


def test_arithmetic_refuses_non_integer_answers_before_the_model_loads(tiny_config, tmp_path):
    """Before: ValueError: invalid literal for int() mid-run, after the first evaluation."""
    data = tmp_path / "train.jsonl"
    data.write_text("".join(f'{{"problem": "q{i}", "answer": "{i}"}}\n' for i in range(8)))
    data.write_text(data.read_text() + '{"problem": "half", "answer": "2.5"}\n')
    config = tiny_config(
        "a", reward="arithmetic", train_file=str(data), model_name_or_path=str(tmp_path / "no")
    )
    with pytest.raises(DataError, match=r"row 8 of .*train.jsonl has the answer '2.5'"):
        train(config, progress=False)
