"""The EM loop on the tiny world: what an iteration samples, allocates and trains, the
uniform/GVM contract, and each option's rule (Knapsack, online statistics, dynamic filtering,
sample weighting, RAFT's steps, restarting like the RLHFlow implementation, recomputed pi_old)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from runlogs import allocation_rows, metric_rows
from safetensors.torch import load_file

import gvm_raft.trainer
from gvm_raft.allocation import allocate, knapsack_allocate
from gvm_raft.config import ConfigError
from gvm_raft.data import prompt_batch
from gvm_raft.errors import DataError
from gvm_raft.estep import ScoredSample
from gvm_raft.estimators import uniform_target_weights
from gvm_raft.mstep import advantages_for, mini_batches
from gvm_raft.rollout.base import Sample
from gvm_raft.run import setup
from gvm_raft.seeds import Stream, stream_rng
from gvm_raft.stats import PromptStats, RunningPromptStats
from gvm_raft.trainer import (
    draw_prompts,
    old_log_probs_for,
    restart_like_the_reference,
    run_iteration,
    sample,
    train,
    weighted_batch,
)


def test_two_iterations_write_metrics_and_checkpoints(tiny_config):
    run_dir = train(tiny_config("run"), progress=False)
    metrics = metric_rows(run_dir)
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    assert metrics[1]["samples/stage1"] == 8 and metrics[1]["samples/stage2"] == 8
    assert metrics[2]["samples/cumulative"] == 32
    assert metrics[1]["train/optimizer_steps"] == 2
    checkpoint = run_dir / "checkpoints" / "iteration-000002"
    assert (checkpoint / "model" / "model.safetensors").exists()
    assert (checkpoint / "optimizer.pt").exists()
    assert not (run_dir / "checkpoints" / "iteration-000001").exists()
    assert (run_dir / "config.yaml").exists()


def test_uniform_and_gvm_differ_only_by_allocation(tiny_config, monkeypatch):
    uniform = metric_rows(train(tiny_config("u", allocation="uniform"), progress=False))
    gvm_dir = train(tiny_config("g", allocation="gvm"), progress=False)
    gvm = metric_rows(gvm_dir)
    assert gvm[0] == uniform[0]
    for key in ("samples/stage1", "tokens/stage1", "stage1/accept_rate"):
        assert gvm[1][key] == uniform[1][key]
    sizes = json.loads((gvm_dir / "allocations.jsonl").read_text().splitlines()[0])["n_samples"]
    assert sum(sizes) == 16 and sizes != [4, 4, 4, 4]

    real_allocate = gvm_raft.trainer.allocate

    def allocate_uniformly(grad_norms, accept_rates, budget, strategy, **kwargs):
        return real_allocate(grad_norms, accept_rates, budget, "uniform", **kwargs)

    monkeypatch.setattr(gvm_raft.trainer, "allocate", allocate_uniformly)
    forced = metric_rows(train(tiny_config("f", allocation="gvm"), progress=False))
    assert forced == uniform


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
        plain = [stream_rng(3, Stream.PROMPT_ORDER, e).permutation(rows).tolist() for e in range(4)]
        assert stream[: 4 * rows] == [p for order in plain for p in order]


def test_eval_every_evaluates_iteration_zero_every_kth_and_the_last(tiny_config):
    run_dir = train(tiny_config("run", iterations=3, eval_every=2), False)
    evaluated = [m["iteration"] for m in metric_rows(run_dir) if "test/accuracy" in m]
    assert evaluated == [0, 2, 3]


def test_each_evaluation_logs_every_groups_accuracy(tiny_config, tiny_world):
    run_dir = train(tiny_config("run", iterations=1, eval_group_column="difficulty"), False)
    levels = [json.loads(line)["difficulty"] for line in (tiny_world / "data/test.jsonl").open()]
    for row in metric_rows(run_dir):
        by_group = sum(row[f"test/accuracy/difficulty={d}"] * levels.count(d) for d in set(levels))
        assert by_group / len(levels) == pytest.approx(row["test/accuracy"])
    train_file = tiny_world / "data/train.jsonl"
    train_levels = [json.loads(line)["difficulty"] for line in train_file.open()]
    for row in allocation_rows(run_dir):  # each trained prompt's group, by its row id
        assert row["group"] == [f"difficulty={train_levels[i]}" for i in row["row_id"]]
    with pytest.raises(DataError, match="eval_group_column='family'"):
        train(tiny_config("other", eval_group_column="family"), False)


def test_knapsack_and_acceptance_only_arms_follow_their_rules(tiny_config):
    knapsack = train(tiny_config("k", allocation="knapsack"), progress=False)
    for row in allocation_rows(knapsack):
        expected = knapsack_allocate(row["accept_rate"], 16, min_samples=2)
        assert row["n_samples"] == expected.tolist()
    p_only = train(tiny_config("p", gvm_use_grad_norms=False), progress=False)
    for row in allocation_rows(p_only):
        ones = np.ones(len(row["accept_rate"]))
        expected = allocate(ones, row["accept_rate"], 16, "gvm", min_samples=2).n_samples
        assert row["n_samples"] == expected.tolist()


def test_online_statistics_come_from_the_previous_visit(tiny_config, monkeypatch):
    """Each revisited prompt is allocated from the acceptance and G_i measured on its samples at
    its previous visit, row by row (before, the test only checked the allocation's total)."""
    visits: list[dict[int, tuple[float, float]]] = []
    real_update = RunningPromptStats.update

    def record(self, row_ids, accepted, sampled, grad_norms):
        rates = np.asarray(accepted) / np.asarray(sampled)
        visits.append(dict(zip(row_ids, zip(rates, grad_norms, strict=True), strict=True)))
        return real_update(self, row_ids, accepted, sampled, grad_norms)

    monkeypatch.setattr(RunningPromptStats, "update", record)
    run_dir = train(
        tiny_config("o", online_stats=True, stage1_samples=0, iterations=5),
        progress=False,
    )
    metrics = metric_rows(run_dir)
    assert all(m["samples/stage1"] == 0 and m["samples/stage2"] == 16 for m in metrics[1:])
    recorded = allocation_rows(run_dir)
    # 16 prompts, 4 per iteration: the first epoch sees every prompt once, uniformly.
    assert all(r["n_samples"] == [4, 4, 4, 4] for r in recorded[:4])
    assert all(r["accept_rate"] == [1.0] * 4 for r in recorded[:4])  # none yet: all equal
    assert len(visits) == 5 and all(len(v) == 4 for v in visits[:4])
    first_epoch = {row: stats for visit in visits[:4] for row, stats in visit.items()}
    revisit = recorded[4]
    assert sum(revisit["n_samples"]) == 16
    columns = zip(revisit["row_id"], revisit["accept_rate"], revisit["grad_norm"], strict=True)
    for row_id, p, g in columns:
        assert (p, g) == pytest.approx(first_epoch[row_id])
    with pytest.raises(ConfigError, match="stage1_samples=0"):
        tiny_config("x", online_stats=True)


def test_dynamic_filtering_keeps_informative_groups_only(tiny_config):
    run_dir = train(
        tiny_config("d", allocation="uniform", dynamic_filtering=True),
        progress=False,
    )
    for m in metric_rows(run_dir)[1:]:
        assert m["frac_reward_zero_std"] == 0.0
        assert m["train/samples"] == 4 * m["filter/kept_groups"]
        assert m["samples/stage2"] == 8 + 16 * m["filter/rounds"]  # 4 x (4 - 2 reused) + refills
        assert m["filter/kept_groups"] == 4 or m["filter/rounds"] == 3


def scored(group: int, accepted: bool) -> ScoredSample:
    """A two-token sample of GRPO group ``group`` with reward 1 when accepted, else 0."""
    sample = Sample(group, [1], [5, 6], "", [-1.0, -1.0], "stop")
    return ScoredSample(group, sample, float(accepted), accepted)


def test_inverse_acceptance_weights_the_batch_by_one_over_expected_acceptances(tiny_config):
    groups = [
        [scored(0, True), scored(0, False)],
        [scored(1, True), scored(1, True), scored(1, False), scored(1, False)],
    ]
    estimates = PromptStats(np.ones(2), np.array([0.5, 0.5]))
    # n p = 1 and 2: raw weights 1 and 1/2; accepted samples 1, 1/2, 1/2 have mean 2/3
    weighting = tiny_config("x", sample_weighting="inverse_acceptance")
    weighted = weighted_batch(weighting, groups, estimates)
    assert [s.weight for s in weighted] == pytest.approx([1.5, 1.5, 0.75, 0.75, 0.75, 0.75])
    plain = weighted_batch(tiny_config("x"), groups, estimates)
    assert [s.weight for s in plain] == [1.0] * 6
    advantages = advantages_for(tiny_config("x"), weighted)
    assert advantages.tolist() == pytest.approx([1.5, 0.0, 0.75, 0.75, 0.0, 0.0])
    with pytest.raises(ConfigError, match="sample_weighting=inverse_acceptance applies to RAFT"):
        tiny_config("x", algorithm="grpo", sample_weighting="inverse_acceptance")


def test_uniform_target_weights_the_batch_to_uniform_allocations_objective(tiny_config):
    groups = [
        [scored(0, True), scored(0, False)],
        [scored(1, True)] + [scored(1, False)] * 5,
    ]
    estimates = PromptStats(np.ones(2), np.array([0.5, 0.25]))
    raft = tiny_config("x", allocation="gvm-matched")  # num_generations 4: nbar / n_i = 2, 2/3
    weighted = weighted_batch(raft, groups, estimates)
    assert [s.weight for s in weighted] == pytest.approx([2.0] * 2 + [2 / 3] * 6)
    assert advantages_for(raft, weighted).tolist() == pytest.approx([2.0, 0] + [2 / 3] + [0] * 5)
    grpo = tiny_config("x", algorithm="grpo", allocation="gvm-matched")
    # d_4(0.5) / d_2(0.5): d_2 = sqrt(2) / 4; d_4 = 2 (1/4) (3/2) + (3/8) sqrt(3)
    ratio = (0.75 + 0.375 * 3**0.5) / (2**0.5 / 4)
    grouped = weighted_batch(grpo, groups, estimates)
    assert grouped[0].weight == pytest.approx(ratio)
    advantages = advantages_for(grpo, grouped)
    plain = advantages_for(
        grpo, weighted_batch(tiny_config("x", algorithm="grpo"), groups, estimates)
    )
    assert advantages[:2].tolist() == pytest.approx((plain[:2] * ratio).tolist())


@pytest.mark.parametrize(
    ("algorithm", "allocation", "strategy"),
    [
        ("raft++", "gvm-matched", "gvm-accuracy"),
        ("grpo", "gvm-matched", "gvm-grpo"),
        ("raft++", "uniform-solved", "uniform-solved"),
    ],
)
def test_matched_allocation_follows_its_rule_with_its_weights(
    tiny_config, monkeypatch, algorithm, allocation, strategy
):
    weighting = {} if allocation == "gvm-matched" else {"sample_weighting": "uniform_target"}
    config = tiny_config("m", algorithm=algorithm, allocation=allocation, iterations=2, **weighting)
    assert (config.strategy, config.weighting) == (strategy, "uniform_target")
    seen = []
    real_update = gvm_raft.trainer.update_policy

    def record(config, learner, samples, *args):
        seen.append([s.weight for s in samples])
        return real_update(config, learner, samples, *args)

    monkeypatch.setattr(gvm_raft.trainer, "update_policy", record)
    run_dir = train(config, progress=False)
    for row, weights in zip(allocation_rows(run_dir), seen, strict=True):
        n, p = np.array(row["n_samples"]), np.array(row["accept_rate"])
        expected = allocate(row["grad_norm"], p, 16, strategy, min_samples=2, reference_size=4)
        assert row["n_samples"] == expected.n_samples.tolist()
        per_group = uniform_target_weights(n, p, 4, grpo=algorithm == "grpo")
        assert weights == pytest.approx(np.repeat(per_group, n).tolist())
    weighted = tiny_config("w", allocation="gvm-matched", sample_weighting="inverse_acceptance")
    assert (weighted.strategy, weighted.weighting) == ("gvm", "inverse_acceptance")
    with pytest.raises(ConfigError, match="dynamic_filtering"):
        tiny_config("x", allocation="gvm-matched", dynamic_filtering=True)


def test_weighted_raft_trains_with_one_over_expected_acceptances(tiny_config, monkeypatch):
    """The samples reaching the M-step carry 1/(n_i p_i) from the run's own n_i and p_i (scaled to
    mean 1 over the accepted ones), and the update differs from the plain one (before, the test
    passed if the weights were ignored)."""
    seen = []
    real_update = gvm_raft.trainer.update_policy

    def record(config, learner, samples, *args):
        seen.append(samples)
        return real_update(config, learner, samples, *args)

    monkeypatch.setattr(gvm_raft.trainer, "update_policy", record)
    for algorithm in ("raft", "raft++"):
        seen.clear()
        overrides = dict(algorithm=algorithm, iterations=1)
        weighted_dir = train(
            tiny_config(algorithm, sample_weighting="inverse_acceptance", **overrides),
            progress=False,
        )
        row = allocation_rows(weighted_dir)[0]
        n, p = np.array(row["n_samples"]), np.array(row["accept_rate"])
        expected = np.repeat(1.0 / np.maximum(n * p, 1.0), n)
        accepted = np.array([s.accepted for s in seen[0]])
        expected = expected / expected[accepted].mean()
        assert [s.weight for s in seen[0]] == pytest.approx(expected.tolist())
        assert len(set(np.round(expected[accepted], 6))) > 1  # the weights do differ here
        plain = metric_rows(train(tiny_config(f"{algorithm}-plain", **overrides), progress=False))
        weighted = metric_rows(weighted_dir)
        assert weighted[1]["train/loss"] != pytest.approx(plain[1]["train/loss"], rel=1e-6)


def test_raft_takes_as_many_steps_as_the_whole_batch_gives(tiny_config):
    # before: ceil(accepted / mini_batch_size) steps, so arms with different acceptance took
    # different numbers of optimizer steps
    order = np.arange(10)
    raft = tiny_config("x", algorithm="raft", mini_batch_size=8)
    parts = mini_batches(order, raft, steps=5)  # 10 accepted of a 40-sample batch
    assert [len(p) for p in parts] == [2, 2, 2, 2, 2]
    assert sorted(i for p in parts for i in p) == list(range(10))
    assert [len(p) for p in mini_batches(np.arange(23), raft, steps=5)] == [5, 5, 5, 4, 4]
    assert len(mini_batches(np.arange(3), raft, steps=5)) == 3  # fewer accepted than steps
    plus = tiny_config("x", algorithm="raft++", mini_batch_size=8)
    assert [len(p) for p in mini_batches(np.arange(20), plus, steps=3)] == [8, 8, 4]


def test_raft_arms_take_the_same_optimizer_steps(tiny_config):
    # before: uniform [2, 2], GVM [2, 1] here
    steps = {}
    for allocation in ("uniform", "gvm"):
        run = tiny_config(allocation, algorithm="raft", allocation=allocation)
        metrics = metric_rows(train(run, progress=False))[1:]
        steps[allocation] = [m["train/optimizer_steps"] for m in metrics]
    # 16 samples per iteration, mini-batches of 8: 2 steps whatever the acceptance
    assert steps == {"uniform": [2, 2], "gvm": [2, 2]}


def test_restarting_like_the_reference(tiny_config):
    """reference_model=iteration_start: the KL model is the policy at the iteration's
    start; reset_optimizer_each_iteration: AdamW's moments and the warm-up start afresh."""
    overrides = dict(
        reference_model="iteration_start",
        reset_optimizer_each_iteration=True,
        warmup_steps=4,
        beta=0.01,
    )
    run = setup(tiny_config("r", **overrides), progress=False)
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
    kept = setup(tiny_config("k", beta=0.01), progress=False)
    try:
        before = {k: v.clone() for k, v in kept.ref_model.state_dict().items()}
        run_iteration(kept, 1)
        restart_like_the_reference(kept)
        after = kept.ref_model.state_dict()
        assert all(torch.equal(after[k], before[k]) for k in before)  # the initial model
        assert kept.optimizer.state
    finally:
        kept.backend.close()


def test_recomputed_old_log_probs_follow_the_training_model(tiny_config):
    run = setup(tiny_config("o", old_logprobs="recompute"), progress=False)
    try:
        groups = sample(run, draw_prompts(run, 1, [0, 1, 2]), [2, 2, 2], 1, Stream.STAGE1)
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


def test_gradient_checkpointing_recomputes_layers_and_trains_the_same(tiny_config, monkeypatch):
    import transformers.modeling_utils

    calls = []
    checkpoint = transformers.modeling_utils.checkpoint

    def counting(function, *args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return checkpoint(function, *args, **kwargs)

    monkeypatch.setattr(transformers.modeling_utils, "checkpoint", counting)
    plain = train(tiny_config("plain", iterations=1), progress=False)
    assert calls == []
    recomputed = train(
        tiny_config("gc", iterations=1, gradient_checkpointing=True),
        progress=False,
    )
    assert calls and set(calls) == {False}
    for a, b in zip(metric_rows(plain), metric_rows(recomputed), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    weights = [
        load_file(run / "checkpoints/iteration-000001/model/model.safetensors")
        for run in (plain, recomputed)
    ]
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, rtol=1e-5, atol=1e-7)
