"""Checkpoint files: the pointer, pruning by the run's own history, killed-write staging."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

from gvm_raft.checkpoint import (
    STATE_FILE,
    latest_checkpoint,
    load_scheduler,
    read_optimizer_state,
    remove_staging,
    save_checkpoint,
)
from gvm_raft.config import ConfigError
from gvm_raft.fileio import LogFileError, read_jsonl
from gvm_raft.models import ModelLoadError, load_causal_lm


class Saves:
    """Stands for a model or tokenizer: save_pretrained writes one small file."""

    def save_pretrained(self, directory: Path, **_: object) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "weights.txt").write_text("w")


def save(run_dir: Path, iteration: int, keep: int = 1) -> Path:
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), lambda step: 1.0
    )
    return save_checkpoint(run_dir, iteration, Saves(), Saves(), {}, scheduler, {}, keep)


def names(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "checkpoints").iterdir())


def test_pruning_keeps_the_new_checkpoint_over_higher_numbered_leftovers(tmp_path):
    # an earlier run in this directory reached iteration 10; a fresh run saves iteration 1
    save(tmp_path, 10)
    (tmp_path / "checkpoints" / "deepspeed-000010").mkdir()
    assert save(tmp_path, 1).name == "iteration-000001"
    assert names(tmp_path) == ["iteration-000001", "latest"]  # before: 10 kept, 1 deleted
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "iteration-000001"


def test_pruning_keeps_the_newest_of_the_run(tmp_path):
    for iteration in range(1, 5):
        save(tmp_path, iteration, keep=2)
    assert names(tmp_path) == ["iteration-000003", "iteration-000004", "latest"]


def test_a_dangling_pointer_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    save(tmp_path, 1, keep=3)
    save(tmp_path, 2, keep=3)
    (tmp_path / "checkpoints" / "latest").write_text("iteration-000007\n")
    with pytest.warns(UserWarning, match="iteration-000007, which is missing or incomplete"):
        assert latest_checkpoint(tmp_path).name == "iteration-000002"
    (tmp_path / "checkpoints" / "iteration-000002" / STATE_FILE).unlink()  # incomplete
    with pytest.warns(UserWarning, match="resuming from iteration-000001"):
        assert latest_checkpoint(tmp_path).name == "iteration-000001"


def test_a_dangling_pointer_without_any_complete_checkpoint_is_refused(tmp_path):
    save(tmp_path, 1)
    (tmp_path / "checkpoints" / "iteration-000001" / STATE_FILE).unlink()
    with pytest.raises(ConfigError, match=r"cannot be resumed; remove .*checkpoints"):
        latest_checkpoint(tmp_path)
    assert latest_checkpoint(tmp_path / "elsewhere") is None  # no pointer: a new run


def test_staging_directories_of_killed_writes_are_removed(tmp_path):
    save(tmp_path, 1)
    staging = tmp_path / "checkpoints" / ".iteration-000002.abc123"
    (staging / "model").mkdir(parents=True)
    remove_staging(tmp_path)
    assert names(tmp_path) == ["iteration-000001", "latest"]
    assert json.loads((tmp_path / "checkpoints/iteration-000001" / STATE_FILE).read_text()) == {
        "iteration": 1
    }


def test_a_torn_log_line_is_named_or_dropped_at_the_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 0}\n{"iteration": 1}\n{"iteration": 2, "test/acc')
    with pytest.raises(LogFileError, match=r"metrics.jsonl:3: not a JSON line"):
        read_jsonl(path)
    with pytest.warns(UserWarning, match=r"metrics.jsonl:3: dropping a torn last line"):
        assert read_jsonl(path, drop_torn_tail=True) == [{"iteration": 0}, {"iteration": 1}]
    path.write_text('{"iteration": 0}\n{"iter\n{"iteration": 2}\n')
    with pytest.raises(LogFileError, match=r"metrics.jsonl:2: not a JSON line"):
        read_jsonl(path, drop_torn_tail=True)  # only the last line may be torn
    path.write_text('{"iteration": 0}\n[1, 2]\n')
    with pytest.raises(LogFileError, match=r"metrics.jsonl:2: a line must hold a JSON object"):
        read_jsonl(path)
    assert read_jsonl(tmp_path / "missing.jsonl") == []


@pytest.mark.parametrize("name", ["optimizer.pt", "scheduler.pt"])
def test_a_damaged_checkpoint_file_is_refused_by_name(tmp_path, name):
    # before: torch's unpickling traceback, which even suggested weights_only=False
    checkpoint = save(tmp_path, 1)
    torch.save({"state": {}}, checkpoint / "optimizer.pt")
    assert read_optimizer_state(checkpoint) == {"state": {}}  # an intact file loads
    (checkpoint / name).write_bytes(b"\x80\x02garbage")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), lambda step: 1.0
    )
    with pytest.raises(ConfigError, match=f"{name} is damaged .*resume from an earlier"):
        if name == "optimizer.pt":
            read_optimizer_state(checkpoint)
        else:
            load_scheduler(checkpoint, scheduler)


def test_damaged_weights_name_the_checkpoint(tmp_path, tiny_model, char_tokenizer):
    model_dir = tmp_path / "iteration-000001" / "model"
    tiny_model.save_pretrained(model_dir)
    (model_dir / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ModelLoadError, match=r"checkpoint=.*iteration-000001/model: cannot load"):
        load_causal_lm(model_dir, "checkpoint")


def test_a_full_disk_while_saving_loses_nothing(tmp_path):
    save(tmp_path, 1)

    class DiskFull(Saves):
        def save_pretrained(self, directory: Path, **_: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), lambda step: 1.0
    )
    with pytest.raises(OSError, match=r"checkpoint iteration-000002 failed .*No space left") as err:
        save_checkpoint(tmp_path, 2, DiskFull(), Saves(), {}, scheduler, {})
    assert err.value.errno == errno.ENOSPC
    assert "previous checkpoint is intact" in str(err.value)
    assert names(tmp_path) == ["iteration-000001", "latest"]  # no staging left, latest kept
    assert latest_checkpoint(tmp_path).name == "iteration-000001"
