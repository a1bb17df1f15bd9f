"""End-to-end on the tiny world: iterations, checkpoints, resume (also after SIGKILL), the
uniform/GVM contract, reports and trackers."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import parity_reward
import pytest
import torch
from launch import child_env
from safetensors.torch import load_file

import gvm_raft.trainer
from gvm_raft.allocation import allocate, knapsack_allocate
from gvm_raft.cli import main
from gvm_raft.config import ConfigError, TrainConfig, load_config, save_config
from gvm_raft.demo import run_demo
from gvm_raft.estep import ScoredSample
from gvm_raft.models import ModelLoadError, load_causal_lm
from gvm_raft.mstep import advantages_for, mini_batches
from gvm_raft.rollout.base import Sample
from gvm_raft.run import setup
from gvm_raft.stats import PromptStats
from gvm_raft.trainer import (
    old_log_probs_for,
    prompt_batch,
    render,
    restart_like_the_reference,
    run_iteration,
    sample,
    train,
    weighted_batch,
)

REWARD = "parity_reward:even_code_point_sum"


def config(world, out, **overrides) -> TrainConfig:
    values = dict(
        model_name_or_path=str(world / "model"),
        train_file=str(world / "data/train.jsonl"),
        test_file=str(world / "data/test.jsonl"),
        output_dir=str(out),
        reward=REWARD,
        prompt_template="plain",
        iterations=2,
        prompts_per_iteration=4,
        num_generations=4,
        stage1_samples=2,
        max_completion_length=16,
        learning_rate=1e-3,
        mini_batch_size=8,
        micro_batch_size=4,
        eval_samples=2,
    )
    return TrainConfig(**(values | overrides))


def rows(run_dir):
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        out.append({k: v for k, v in json.loads(line).items() if not k.startswith("time/")})
    return out


def test_two_iterations_write_metrics_and_checkpoints(tiny_world, tmp_path):
    run_dir = train(config(tiny_world, tmp_path / "run"), progress=False)
    metrics = rows(run_dir)
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    assert metrics[1]["samples/stage1"] == 8 and metrics[1]["samples/stage2"] == 8
    assert metrics[2]["samples/cumulative"] == 32
    assert metrics[1]["train/optimizer_steps"] == 2
    checkpoint = run_dir / "checkpoints" / "iteration-000002"
    assert (checkpoint / "model" / "model.safetensors").exists()
    assert (checkpoint / "optimizer.pt").exists()
    assert not (run_dir / "checkpoints" / "iteration-000001").exists()
    assert (run_dir / "config.yaml").exists()


def test_resume_repeats_the_uninterrupted_run(tiny_world, tmp_path):
    full = rows(train(config(tiny_world, tmp_path / "full"), progress=False))
    train(config(tiny_world, tmp_path / "cut", iterations=1), progress=False)
    resumed = rows(train(config(tiny_world, tmp_path / "cut", resume=True), progress=False))
    assert resumed == full


def test_resume_refuses_settings_that_change_the_experiment(tiny_world, tmp_path):
    train(config(tiny_world, tmp_path / "run", iterations=1), progress=False)
    changed = config(tiny_world, tmp_path / "run", resume=True, allocation="uniform", beta=0.01)
    with pytest.raises(ConfigError, match=r"allocation='gvm', beta=0\.001; resuming it with "):
        train(changed, progress=False)
    extended = config(tiny_world, tmp_path / "run", resume=True, eval_samples=1)
    assert [m["iteration"] for m in rows(train(extended, progress=False))] == [0, 1, 2]


def test_existing_run_is_not_overwritten(tiny_world, tmp_path):
    train(config(tiny_world, tmp_path / "run", iterations=1), progress=False)
    with pytest.raises(ConfigError, match="resume=true"):
        train(config(tiny_world, tmp_path / "run", iterations=1), progress=False)


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'learning_rate'"):
        load_config(None, ["learning_rat=1e-4"])
    with pytest.raises(ConfigError, match="num_generations must be a int"):
        load_config(None, ["num_generations=many"])


def test_uniform_and_gvm_differ_only_by_allocation(tiny_world, tmp_path, monkeypatch):
    uniform = rows(train(config(tiny_world, tmp_path / "u", allocation="uniform"), progress=False))
    gvm_dir = train(config(tiny_world, tmp_path / "g", allocation="gvm"), progress=False)
    gvm = rows(gvm_dir)
    assert gvm[0] == uniform[0]
    for key in ("samples/stage1", "tokens/stage1", "stage1/accept_rate"):
        assert gvm[1][key] == uniform[1][key]
    sizes = json.loads((gvm_dir / "allocations.jsonl").read_text().splitlines()[0])["samples"]
    assert sum(sizes) == 16 and sizes != [4, 4, 4, 4]

    real_allocate = gvm_raft.trainer.allocate

    def allocate_uniformly(grad_norms, accept_rates, budget, method, **kwargs):
        return real_allocate(grad_norms, accept_rates, budget, "uniform", **kwargs)

    monkeypatch.setattr(gvm_raft.trainer, "allocate", allocate_uniformly)
    forced = rows(train(config(tiny_world, tmp_path / "f", allocation="gvm"), progress=False))
    assert forced == uniform


def test_killed_run_resumes_to_the_same_metrics(tiny_world, tmp_path):
    full = rows(train(config(tiny_world, tmp_path / "full", iterations=4), progress=False))
    killed = tmp_path / "killed"
    config_file = tmp_path / "killed.yaml"
    save_config(config(tiny_world, killed, iterations=4), config_file)
    process = subprocess.Popen(
        [sys.executable, "-m", "gvm_raft.cli", "train", str(config_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_env(),
    )
    deadline = time.monotonic() + 300
    while not (killed / "checkpoints" / "latest").exists():
        assert process.poll() is None, "the training process ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    latest = (killed / "checkpoints" / "latest").read_text().strip()
    assert latest in {"iteration-000001", "iteration-000002", "iteration-000003"}

    resumed = rows(train(config(tiny_world, killed, iterations=4, resume=True), progress=False))
    assert resumed == full
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == [
        "iteration-000004",
        "latest",
    ]


@pytest.mark.slow  # about 100 s of process starts; test_killed_run_resumes covers the path
def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_metrics(tiny_world, tmp_path):
    """Fault injection: SIGKILL at random moments (sampling, update, evaluation, checkpoint
    write, log append), resume, repeat until the run completes; the metrics and allocations
    equal the uninterrupted run's and no staging directory is left behind."""
    settings = dict(iterations=8, keep_checkpoints=2)
    full_dir = train(config(tiny_world, tmp_path / "full", **settings), progress=False)
    killed = tmp_path / "killed"
    config_file = tmp_path / "killed.yaml"
    save_config(config(tiny_world, killed, resume=True, **settings), config_file)
    rng = np.random.default_rng(0)
    kills = 0
    metrics = killed / "metrics.jsonl"

    def stamp() -> int | None:
        return metrics.stat().st_mtime_ns if metrics.exists() else None

    for _ in range(40):
        before = stamp()
        log = (tmp_path / "stderr.txt").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "gvm_raft.cli", "train", str(config_file)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=child_env(),
        )
        deadline = time.monotonic() + 300
        while stamp() == before and process.poll() is None:  # until this process has resumed
            assert time.monotonic() < deadline, "the run wrote no metrics within 300 s"
            time.sleep(0.01)
        try:
            process.wait(timeout=float(rng.uniform(0.0, 0.8)))  # training is under way
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        assert process.returncode == 0, (tmp_path / "stderr.txt").read_text()[-2000:]
        break
    else:
        pytest.fail("the run did not complete within 40 starts")
    assert kills >= 2
    assert rows(killed) == rows(full_dir)
    allocations = [(d / "allocations.jsonl").read_text() for d in (full_dir, killed)]
    assert allocations[0] == allocations[1]
    assert not list((killed / "checkpoints").glob(".*"))


def test_report_overlays_runs(tiny_world, tmp_path, capsys):
    runs = [
        train(config(tiny_world, tmp_path / name, iterations=1, allocation=name), progress=False)
        for name in ("uniform", "gvm")
    ]
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    table = (out / "report.md").read_text()
    assert "uniform (uniform-RAFT++)" in table and "gvm (gvm-RAFT++)" in table
    for name in ("accuracy_vs_iteration", "accuracy_vs_samples", "allocation_vs_accept_rate"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name}.png)" in table
    assert main(["report", str(tmp_path), "--out", str(out)]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err


def test_tensorboard_tracker_receives_metrics(tiny_world, tmp_path):
    pytest.importorskip("tensorboard")
    run_dir = train(
        config(tiny_world, tmp_path / "tb", iterations=1, log_with="tensorboard"), progress=False
    )
    assert list(run_dir.rglob("events.out.tfevents.*"))
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbored'"):
        train(config(tiny_world, tmp_path / "x", log_with="tensorbored"), progress=False)


def test_exported_stats_reproduce_the_runs_allocation(tiny_world, tmp_path):
    run_dir = train(config(tiny_world, tmp_path / "run", iterations=2), progress=False)
    recorded = [
        json.loads(line) for line in (run_dir / "allocations.jsonl").read_text().splitlines()
    ]
    stats, sizes = tmp_path / "stats.jsonl", tmp_path / "sizes.json"
    assert main(["stats", str(run_dir), "--iteration", "1", "--out", str(stats)]) == 0
    exported = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [r["prompt_index"] for r in exported] == recorded[0]["prompt_index"]
    # The run's rule: budget 4 x 4, exact, at least k = 2 per prompt (stage 1 reused).
    allocate = ["allocate", str(stats), "--budget", "16", "--method", "exact", "--min", "2"]
    assert main([*allocate, "--out", str(sizes)]) == 0
    assert json.loads(sizes.read_text()) == recorded[0]["samples"]
    assert main(["stats", str(run_dir), "--iteration", "7", "--out", str(stats)]) == 2


def allocations(run_dir):
    return [json.loads(line) for line in (run_dir / "allocations.jsonl").read_text().splitlines()]


def test_knapsack_and_acceptance_only_arms_follow_their_rules(tiny_world, tmp_path):
    knapsack = train(config(tiny_world, tmp_path / "k", allocation="knapsack"), progress=False)
    for row in allocations(knapsack):
        expected = knapsack_allocate(row["accept_rate"], 16, min_samples=2)
        assert row["samples"] == expected.tolist()
    p_only = train(config(tiny_world, tmp_path / "p", gvm_use_grad_norms=False), progress=False)
    for row in allocations(p_only):
        ones = np.ones(len(row["accept_rate"]))
        expected = allocate(ones, row["accept_rate"], 16, "exact", min_samples=2)
        assert row["samples"] == expected.tolist()


def test_online_statistics_come_from_the_previous_visit(tiny_world, tmp_path):
    run_dir = train(
        config(tiny_world, tmp_path / "o", online_stats=True, stage1_samples=0, iterations=5),
        progress=False,
    )
    metrics = rows(run_dir)
    assert all(m["samples/stage1"] == 0 and m["samples/stage2"] == 16 for m in metrics[1:])
    recorded = allocations(run_dir)
    # 16 prompts, 4 per iteration: the first epoch sees every prompt once, uniformly.
    assert all(r["samples"] == [4, 4, 4, 4] for r in recorded[:4])
    assert all(r["accept_rate"] == [1.0] * 4 for r in recorded[:4])  # none yet: all equal
    assert sum(recorded[4]["samples"]) == 16
    with pytest.raises(ConfigError, match="stage1_samples=0"):
        config(tiny_world, tmp_path / "x", online_stats=True)


def test_dynamic_filtering_keeps_informative_groups_only(tiny_world, tmp_path):
    run_dir = train(
        config(tiny_world, tmp_path / "d", allocation="uniform", dynamic_filtering=True),
        progress=False,
    )
    for m in rows(run_dir)[1:]:
        assert m["frac_reward_zero_std"] == 0.0
        assert m["train/samples"] == 4 * m["filter/kept_groups"]
        assert m["samples/stage2"] == 8 + 16 * m["filter/rounds"]  # 4 x (4 - 2 reused) + refills
        assert m["filter/kept_groups"] == 4 or m["filter/rounds"] == 3


@pytest.mark.parametrize(
    ("variable", "engine"),
    [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")],
)
def test_sharding_engine_without_gpu_is_refused(
    tiny_world, tmp_path, monkeypatch, variable, engine
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(variable, "true")
    with pytest.raises(ConfigError, match=f"asks for {engine} .* torchrun"):
        train(config(tiny_world, tmp_path / "run"), progress=False)


def test_inverse_acceptance_weights_the_batch_by_one_over_expected_acceptances(tiny_world):
    def scored(group: int, accepted: bool) -> ScoredSample:
        sample = Sample(group, [5, 6], "", [-1.0, -1.0], "stop")
        return ScoredSample(group, [1], sample, float(accepted), accepted, 2)

    groups = [
        [scored(0, True), scored(0, False)],
        [scored(1, True), scored(1, True), scored(1, False), scored(1, False)],
    ]
    estimates = PromptStats(np.ones(2), np.array([0.5, 0.5]))
    # n p = 1 and 2: raw weights 1 and 1/2; accepted samples 1, 1/2, 1/2 have mean 2/3
    weighting = config(tiny_world, "x", sample_weighting="inverse_acceptance")
    weighted = weighted_batch(weighting, groups, estimates)
    assert [s.weight for s in weighted] == pytest.approx([1.5, 1.5, 0.75, 0.75, 0.75, 0.75])
    plain = weighted_batch(config(tiny_world, "x"), groups, estimates)
    assert [s.weight for s in plain] == [1.0] * 6
    advantages = advantages_for(config(tiny_world, "x"), weighted)
    assert advantages.tolist() == pytest.approx([1.5, 0.0, 0.75, 0.75, 0.0, 0.0])
    with pytest.raises(ConfigError, match="sample_weighting applies to RAFT"):
        config(tiny_world, "x", algorithm="grpo", sample_weighting="inverse_acceptance")


def test_weighted_raft_runs_end_to_end(tiny_world, tmp_path):
    for algorithm in ("raft", "raft++"):
        overrides = dict(algorithm=algorithm, sample_weighting="inverse_acceptance", iterations=1)
        metrics = rows(train(config(tiny_world, tmp_path / algorithm, **overrides), progress=False))
        assert metrics[1]["train/optimizer_steps"] >= 1
        assert np.isfinite(metrics[1]["train/loss"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (dict(prompts_per_iteration=1000), "prompts_per_iteration=1000 exceeds the 16 usable"),
        (dict(reward="no_such_module:fn"), "reward 'no_such_module:fn' cannot be loaded"),
    ],
)
def test_data_and_reward_errors_come_before_the_model_is_loaded(
    tiny_world, tmp_path, override, message
):
    """The model path does not exist, so the error proves the model was never loaded."""
    missing_model = str(tmp_path / "no-model")
    with pytest.raises(ValueError, match=message):
        train(
            config(tiny_world, tmp_path / "run", model_name_or_path=missing_model, **override),
            progress=False,
        )


def test_a_failed_setup_closes_the_reward(tiny_world, tmp_path, monkeypatch):
    closed = []
    monkeypatch.setattr("gvm_raft.run.close_reward", closed.append)
    with pytest.raises(ModelLoadError, match="model_name_or_path"):
        train(
            config(tiny_world, tmp_path / "a", model_name_or_path=str(tmp_path / "none")),
            progress=False,
        )
    assert closed == [parity_reward.even_code_point_sum]


def test_demo_checks_its_overrides_before_building_the_world(tmp_path):
    with pytest.raises(ConfigError, match="iterations must be a int; got 'abc'"):
        run_demo(str(tmp_path / "world"), str(tmp_path / "demo"), ["iterations=abc"])
    assert not (tmp_path / "world").exists()


def test_gradient_checkpointing_recomputes_layers_and_trains_the_same(
    tiny_world, tmp_path, monkeypatch
):
    import transformers.modeling_utils

    calls = []
    checkpoint = transformers.modeling_utils.checkpoint

    def counting(function, *args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return checkpoint(function, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counting)
    plain = train(config(tiny_world, tmp_path / "plain", iterations=1), progress=False)
    assert calls == []
    recomputed = train(
        config(tiny_world, tmp_path / "gc", iterations=1, gradient_checkpointing=True),
        progress=False,
    )
    assert calls and set(calls) == {False}
    for a, b in zip(rows(plain), rows(recomputed), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    weights = [
        load_file(run / "checkpoints/iteration-000001/model/model.safetensors")
        for run in (plain, recomputed)
    ]
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=1e-5, atol=1e-7)


def test_attention_kernel_is_applied_and_a_bad_one_is_named(tiny_world):
    model = load_causal_lm(tiny_world / "model", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    with pytest.raises(ModelLoadError, match="attn_implementation=no_such_kernel: "):
        load_causal_lm(tiny_world / "model", attn_implementation="no_such_kernel")


@pytest.mark.parametrize(("rows", "per_iteration"), [(10, 4), (7, 7), (9, 8), (12, 4), (5, 3)])
def test_prompt_batches_cover_each_epoch_once_and_never_repeat_a_prompt(rows, per_iteration):
    batches = [prompt_batch(rows, per_iteration, 3, t) for t in range(1, 4 * rows + 1)]
    stream = [p for batch in batches for p in batch]
    for batch in batches:
        assert len(batch) == per_iteration == len(set(batch))
    for epoch in range(len(stream) // rows):
        assert sorted(stream[epoch * rows : (epoch + 1) * rows]) == list(range(rows))
    assert batches == [prompt_batch(rows, per_iteration, 3, t) for t in range(1, 4 * rows + 1)]
    if rows % per_iteration == 0:  # no batch spans two epochs: the plain seeded permutations
        plain = [np.random.default_rng([3, e]).permutation(rows).tolist() for e in range(4)]
        assert stream[: 4 * rows] == [p for order in plain for p in order]


def test_eval_every_evaluates_iteration_zero_every_kth_and_the_last(tiny_world, tmp_path):
    run_dir = train(config(tiny_world, tmp_path / "run", iterations=3, eval_every=2), False)
    evaluated = [m["iteration"] for m in rows(run_dir) if "test/accuracy" in m]
    assert evaluated == [0, 2, 3]


def test_raft_takes_as_many_steps_as_the_whole_batch_gives(tiny_world):
    # before: ceil(accepted / mini_batch_size) steps, so arms with different acceptance took
    # different numbers of optimizer steps
    order = np.arange(10)
    raft = config(tiny_world, "x", algorithm="raft", mini_batch_size=8)
    parts = mini_batches(order, raft, steps=5)  # 10 accepted of a 40-sample batch
    assert [len(p) for p in parts] == [2, 2, 2, 2, 2]
    assert sorted(i for p in parts for i in p) == list(range(10))
    assert [len(p) for p in mini_batches(np.arange(23), raft, steps=5)] == [5, 5, 5, 4, 4]
    assert len(mini_batches(np.arange(3), raft, steps=5)) == 3  # fewer accepted than steps
    plus = config(tiny_world, "x", algorithm="raft++", mini_batch_size=8)
    assert [len(p) for p in mini_batches(np.arange(20), plus, steps=3)] == [8, 8, 4]


def test_raft_arms_take_the_same_optimizer_steps(tiny_world, tmp_path):
    # before: uniform [2, 2], GVM [2, 1] here
    steps = {}
    for allocation in ("uniform", "gvm"):
        run = config(tiny_world, tmp_path / allocation, algorithm="raft", allocation=allocation)
        metrics = rows(train(run, progress=False))[1:]
        steps[allocation] = [m["train/optimizer_steps"] for m in metrics]
    # 16 samples per iteration, mini-batches of 8: 2 steps whatever the acceptance
    assert steps == {"uniform": [2, 2], "gvm": [2, 2]}


def test_restarting_like_the_reference(tiny_world, tmp_path):
    """reference_model=iteration_start: the KL reference is the policy at the iteration's
    start; reset_optimizer_each_iteration: AdamW's moments and the warm-up start afresh."""
    overrides = dict(
        reference_model="iteration_start",
        reset_optimizer_each_iteration=True,
        warmup_steps=4,
        beta=0.01,
    )
    run = setup(config(tiny_world, tmp_path / "r", **overrides), progress=False)
    try:
        initial = {k: v.clone() for k, v in run.ref_model.state_dict().items()}
        run_iteration(run, 1)
        assert run.optimizer.state  # AdamW moments after two steps
        assert run.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 3 / 4)
        policy = run.policy.state_dict()
        assert any(not torch.equal(policy[k], initial[k]) for k in initial)  # it trained
        restart_like_the_reference(run)
        reference = run.ref_model.state_dict()
        assert all(torch.equal(reference[k], policy[k]) for k in policy)
        assert not run.optimizer.state
        assert run.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 / 4)  # warm-up again
    finally:
        run.backend.close()
    kept = setup(config(tiny_world, tmp_path / "k", beta=0.01), progress=False)
    try:
        before = {k: v.clone() for k, v in kept.ref_model.state_dict().items()}
        run_iteration(kept, 1)
        restart_like_the_reference(kept)
        after = kept.ref_model.state_dict()
        assert all(torch.equal(after[k], before[k]) for k in before)  # the initial model
        assert kept.optimizer.state
    finally:
        kept.backend.close()


def test_recomputed_old_log_probs_follow_the_training_model(tiny_world, tmp_path):
    run = setup(config(tiny_world, tmp_path / "o", old_logprobs="recompute"), progress=False)
    try:
        rows_ = run.train_rows[:3]
        groups = sample(run, rows_, [render(run, r) for r in rows_], [2, 2, 2], 1, stage=1)
        batch = [s for g in groups for s in g]
        recomputed = old_log_probs_for(run, batch)
        # fp32 transformers backend: the teacher-forced policy gives the sampler's log-probs
        for before, after in zip(batch, recomputed, strict=True):
            assert after.sample.token_ids == before.sample.token_ids
            np.testing.assert_allclose(after.sample.log_probs, before.sample.log_probs, atol=1e-4)
        with torch.no_grad():
            for parameter in run.policy.parameters():
                parameter.mul_(0.5)
        moved = old_log_probs_for(run, batch)
        assert any(
            not np.allclose(m.sample.log_probs, b.sample.log_probs, atol=1e-3)
            for m, b in zip(moved, batch, strict=True)
        )
        sampler = dataclasses.replace(run.config, old_logprobs="auto")  # auto: hf -> sampler
        assert old_log_probs_for(dataclasses.replace(run, config=sampler), batch) is batch
    finally:
        run.backend.close()
