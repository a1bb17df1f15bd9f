"""Single-process parts of sharding.py: whole-model state and optimizer state round trips, and
the errors a mismatched resume gets. The multi-process engines are tested in
test_distributed.py."""

from __future__ import annotations

import pytest
import torch

from gvm_raft.checkpoint import read_optimizer_state
from gvm_raft.config import ConfigError
from gvm_raft.sharding import (
    full_state_dict,
    load_engine_state,
    load_optimizer_state,
    optimizer_state,
    refresh_replica,
)


def adam_after_one_step(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 3)).square().sum().backward()
    optimizer.step()
    return model, optimizer


def test_optimizer_state_is_keyed_by_name_and_loads_back():
    model, optimizer = adam_after_one_step(0)
    state = optimizer_state(model, optimizer)
    assert set(state["state"]) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    other, other_optimizer = adam_after_one_step(1)
    load_optimizer_state(other, other_optimizer, state)
    for mine, theirs in zip(model.parameters(), other.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(
                other_optimizer.state[theirs][key], optimizer.state[mine][key]
            )


def test_replica_takes_the_trained_weights():
    model, _ = adam_after_one_step(0)
    replica, _ = adam_after_one_step(1)
    refresh_replica(model, replica)
    assert full_state_dict(replica).keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(replica.state_dict()[name], value)


def test_mismatched_resumes_name_the_fix(tmp_path):
    state = tmp_path / "deepspeed-000002" / "state"
    state.mkdir(parents=True)
    for rank in range(2):
        (state / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").touch()
    with pytest.raises(ConfigError, match="written by 2 processes: resume with 2 processes"):
        load_engine_state(torch.nn.Linear(1, 1), state.parent, processes=4)
    with pytest.raises(ConfigError, match="holds no DeepSpeed engine state"):
        load_engine_state(torch.nn.Linear(1, 1), tmp_path / "elsewhere", processes=2)
    with pytest.raises(ConfigError, match="written under DeepSpeed"):
        read_optimizer_state(tmp_path)
