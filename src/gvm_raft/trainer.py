"""The EM loop: stage 1, estimates, allocation, stage 2, M-step, evaluation, record, save.

``run_iteration`` reads as the paper's algorithm; each option (online statistics, stage-1
reuse, dynamic filtering, sample weighting, recomputed pi_old) is one call below it.
Uniform and GVM runs share every line except the allocation strategy. Every random stream is
named in seeds.py and derived from (seed, stream, iteration, process, ...), so a resumed run
repeats an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gvm_raft.allocation import Allocation, allocate
from gvm_raft.checkpoint import (
    engine_state_dir,
    latest_checkpoint,
    load_scheduler,
    load_state,
    read_optimizer_state,
    save_checkpoint,
)
from gvm_raft.config import GVMConfig
from gvm_raft.data import PromptRow, prompt_batch
from gvm_raft.distributed import (
    check_identical,
    run_shared,
)
from gvm_raft.errors import NonFiniteError
from gvm_raft.estep import (
    ScoredSample,
    prompt_statistics,
    sample_and_score,
    teacher_forced_log_probs,
    with_old_log_probs,
)
from gvm_raft.estimators import inverse_acceptance_weights, uniform_target_weights
from gvm_raft.evaluate import evaluate_policy
from gvm_raft.metrics import (
    allocation_metrics,
    device_memory_metrics,
    generation_counts,
    process_load_metrics,
    sample_metrics,
)
from gvm_raft.mstep import update_policy
from gvm_raft.rewards import close_reward, reward_name
from gvm_raft.rollout.base import SamplingParams
from gvm_raft.run import (
    Inputs,
    Run,
    log,
    record_allocation,
    record_completions,
    render,
    setup,
    sync_policy,
)
from gvm_raft.rundir import keep_logs_until
from gvm_raft.seeds import Stream, stream_rng, stream_seed
from gvm_raft.sharding import (
    load_engine_state,
    load_optimizer_state,
    optimizer_state,
    save_engine_state,
    uses_deepspeed,
)
from gvm_raft.stats import PromptStats, RunningPromptStats


def train(config: GVMConfig, progress: bool = True, inputs: Inputs | None = None) -> Path:
    """Run (or resume) the configured training, from the config's paths or the given Python
    objects (``GVMTrainer``); returns the run directory."""
    run = setup(config, progress, inputs)
    try:
        start = resume_point(run)
        if start == 0:
            log(run, {"iteration": 0} | evaluate_policy(run))
        for iteration in range(start + 1, config.iterations + 1):
            tic = time.perf_counter()
            try:
                metrics = run_iteration(run, iteration)
            except NonFiniteError as err:
                raise NonFiniteError(
                    f"iteration {iteration}: {err}. Nothing of this iteration was saved: the "
                    f"last checkpoint (iteration {iteration - 1}) holds the last good weights"
                ) from None
            metrics["time/iteration"] = time.perf_counter() - tic
            log(run, metrics)
            save_iteration(run, iteration)
        run.accelerator.wait_for_everyone()  # no process closes its engine while others sample
    finally:
        close_reward(run.reward_fn)
        run.backend.close()
        run.accelerator.end_training()
    return run.run_dir


def resume_point(run: Run) -> int:
    """Restore the latest checkpoint's optimizer, statistics and counters; its iteration or 0.

    Metric rows beyond the checkpoint (written before a kill) are dropped; they are recomputed.
    """
    checkpoint = latest_checkpoint(run.run_dir) if run.config.resume else None
    iteration = 0
    if checkpoint is not None:
        state = load_state(checkpoint)
        iteration = int(state["iteration"])
        if uses_deepspeed(run.accelerator):
            load_engine_state(
                run.model,
                engine_state_dir(run.run_dir, iteration),
                run.accelerator.num_processes,
            )
        else:
            load_optimizer_state(run.model, run.optimizer, read_optimizer_state(checkpoint))
        load_scheduler(checkpoint, run.scheduler)
        run.stats.load_state_dict(state["stats"])
        run.totals.update(state["totals"])
    if run.accelerator.is_main_process:
        keep_logs_until(run.run_dir, iteration if checkpoint is not None else None)
    run.accelerator.wait_for_everyone()
    return iteration


def save_iteration(run: Run, iteration: int) -> None:
    """Checkpoint the run after ``iteration``: policy, optimizer (or DeepSpeed engine) state,
    schedule, prompt statistics and sample counters."""
    tic = time.perf_counter()
    optimizer = None
    if uses_deepspeed(run.accelerator):
        save_engine_state(run.model, engine_state_dir(run.run_dir, iteration))
    else:
        optimizer = optimizer_state(run.model, run.optimizer)
    if run.accelerator.is_main_process:
        save_checkpoint(
            run.run_dir,
            iteration,
            run.policy,
            run.tokenizer,
            optimizer,
            run.scheduler,
            {"stats": run.stats.state_dict(), "totals": run.totals},
            keep=run.config.keep_checkpoints,
        )
    run.accelerator.wait_for_everyone()
    seconds = time.perf_counter() - tic
    if run.progress and run.accelerator.is_main_process and seconds > SLOW_CHECKPOINT_SECONDS:
        print(f"  checkpoint saved in {seconds:.1f}s", flush=True)


SLOW_CHECKPOINT_SECONDS = 5.0  # a checkpoint slower than this is named on the console


def run_iteration(run: Run, iteration: int) -> dict:
    """One EM iteration on a fresh batch of prompts; returns its metrics row."""
    config, timer = run.config, Timer()
    restart_like_the_reference(run)
    batch = draw_prompts(run, iteration)
    # Stage 1: k samples per prompt, then the estimates of p_i and G_i
    stage1 = sample(run, batch, [config.stage1_samples] * batch.size, iteration, Stream.STAGE1)
    estimates = estimate(run, batch, stage1)
    timer.lap("stage1")
    # Allocation: n_i per prompt, summing to the budget N
    allocation = allocate_samples(config, estimates)
    check_identical(run.accelerator, allocation.n_samples.tolist(), "the allocation")
    reused = config.stage1_samples if config.reuse_stage1 else 0
    stage2_n_samples = np.maximum(allocation.n_samples - reused, 0)
    timer.lap("allocate")
    # Stage 2: the allocated samples (joined by stage 1's when reused), then the M-step's batch
    stage2 = sample(run, batch, stage2_n_samples.tolist(), iteration, Stream.STAGE2)
    groups = join_stages(config, stage1, stage2)
    n_samples = np.array([len(g) for g in groups])
    update_online_stats(run, batch, groups)
    kept, refills, filtering = keep_informative_groups(run, batch, groups, iteration)
    samples = old_log_probs_for(run, weighted_batch(config, kept, estimates))
    timer.lap("stage2")
    # M-step
    update = update_policy(config, run.learner, samples, *m_step_streams(run, iteration))
    sync_policy(run)
    timer.lap("update")
    # Evaluation, on schedule and after the last iteration
    due = iteration % config.eval_every == 0 or iteration == config.iterations
    evaluation = evaluate_policy(run) if due else {}
    timer.lap("eval")
    # Record
    record_allocation(run, iteration, batch.rows, estimates, n_samples, allocation.fallback)
    record_completions(run, iteration, batch.rows, groups, estimates)
    generated = generation_counts(stage1, stage2 + refills)
    for key, count in generated.items():
        run.totals[key] += count
    checks = getattr(run.reward_fn, "counts", {})  # a verifier's checks so far (reward=math)
    return (
        {"iteration": iteration, "epoch": ((iteration - 1) * batch.size) // len(run.train_rows)}
        | sample_metrics(stage1, stage2 + refills, kept, generated, run.totals, checks)
        | allocation_metrics(n_samples, stage2_n_samples, estimates, allocation.fallback)
        | filtering
        | process_load_metrics(stage2_n_samples, run.accelerator.num_processes)
        | {f"train/{key}": value for key, value in update.items()}
        | evaluation
        | device_memory_metrics()
        | timer.laps
    )


@dataclass
class PromptBatch:
    """Prompts sampled together: their dataset rows, rendered texts, and group ids (GRPO's
    groups: the prompt's position in the iteration's batch)."""

    rows: list[PromptRow]
    prompts: list[str]
    group_ids: list[int]

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def row_ids(self) -> list[int]:
        return [row.row_id for row in self.rows]


def draw_prompts(run: Run, iteration: int, positions: list[int] | None = None) -> PromptBatch:
    """The iteration's prompts (``prompt_batch``), or the training rows at ``positions``."""
    if positions is None:
        config = run.config
        positions = prompt_batch(
            len(run.train_rows), config.prompts_per_iteration, config.seed, iteration
        )
    rows = [run.train_rows[i] for i in positions]
    return PromptBatch(rows, [render(run, row) for row in rows], list(range(len(rows))))


def m_step_streams(run: Run, iteration: int) -> tuple[np.random.Generator, int]:
    """The M-step's random streams: the mini-batch order, and this process's dropout seed."""
    seed, rank = run.config.seed, run.accelerator.process_index
    order = stream_rng(seed, Stream.MINI_BATCH_ORDER, iteration)
    return order, stream_seed(seed, Stream.DROPOUT, iteration, rank)


def restart_like_the_reference(run: Run) -> None:
    """The RLHFlow implementation restarts every EM iteration from that iteration's checkpoint:
    its KL model is the policy at the iteration's start and AdamW (with its warm-up) starts
    afresh. Each behaviour is an option (reference_model, reset_optimizer_each_iteration)."""
    if run.config.reference_model == "iteration_start" and run.ref_model is not None:
        run.ref_model.load_state_dict(run.policy.state_dict())
    if run.config.reset_optimizer_each_iteration:
        run.optimizer.state.clear()
        run.scheduler.load_state_dict(run.fresh_scheduler_state)
        for group, lr in zip(run.optimizer.param_groups, run.scheduler.get_last_lr(), strict=True):
            group["lr"] = lr


def estimate(run: Run, batch: PromptBatch, stage1: list[list[ScoredSample]]) -> PromptStats:
    """p_i and G_i of the batch's prompts: measured on stage 1 and blended into the running
    statistics, or (online_stats) each prompt's estimates from its previous visit."""
    if run.config.online_stats:
        return previous_estimates(run.stats, batch.row_ids)
    return run.stats.update(batch.row_ids, *measure(run, stage1))


def join_stages(
    config: GVMConfig, stage1: list[list[ScoredSample]], stage2: list[list[ScoredSample]]
) -> list[list[ScoredSample]]:
    """Each prompt's group: its stage-2 samples, after its stage-1 samples when reused."""
    if not config.reuse_stage1:
        return stage2
    return [g1 + g2 for g1, g2 in zip(stage1, stage2, strict=True)]


def update_online_stats(run: Run, batch: PromptBatch, groups: list[list[ScoredSample]]) -> None:
    """online_stats: measure the prompts on this iteration's samples for their next visit."""
    if not run.config.online_stats:
        return
    visited = [i for i, group in enumerate(groups) if group]
    accepted, sampled, grad_norms = measure(run, [groups[i] for i in visited])
    run.stats.update([batch.row_ids[i] for i in visited], accepted, sampled, grad_norms)


def measure(
    run: Run, groups: list[list[ScoredSample]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accepted, sampled, G) per group, G on the configured parameter group and samples; the
    gradient work is shared across processes by the count of samples measured."""

    def work(items: list[int]) -> list[tuple[float, float, float]]:
        accepted, sampled, grad_norms = prompt_statistics(
            run.policy,
            [groups[i] for i in items],
            run.tokenizer.pad_token_id,
            run.config.grad_norm_group,
            run.config.micro_batch_size,
            run.config.grad_norm_reduction,
            run.config.grad_norm_samples,
        )
        return list(zip(accepted.tolist(), sampled.tolist(), grad_norms.tolist(), strict=True))

    everyone = run.config.grad_norm_samples == "all"
    loads = [len(g) if everyone else sum(s.accepted for s in g) for g in groups]
    rows = run_shared(run.accelerator, loads, work)
    if not rows:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    accepted, sampled, grad_norms = (
        np.array(column, dtype=np.float64) for column in zip(*rows, strict=True)
    )
    return accepted, sampled, grad_norms


def previous_estimates(stats: RunningPromptStats, row_ids: list[int]) -> PromptStats:
    """Estimates from each prompt's previous visit; unseen prompts get the mean of the seen
    ones (all equal, i.e. a uniform allocation, when none was seen)."""
    estimates = stats.estimates(row_ids)
    seen = stats.seen(row_ids)
    if not seen.any():
        return PromptStats(np.ones(len(row_ids)), np.ones(len(row_ids)))
    for values in (estimates.grad_norms, estimates.accept_rates):
        values[~seen] = values[seen].mean()
    return estimates


def allocate_samples(config: GVMConfig, estimates: PromptStats) -> Allocation:
    """n_i per prompt for this iteration (budget N) by the configured strategy (gvm-matched
    resolved for the algorithm, ``GVMConfig.strategy``). With
    reuse_stage1 every prompt already holds k samples, so n_i >= k."""
    minimum = max(config.min_generations, config.stage1_samples if config.reuse_stage1 else 0)
    grad_norms = estimates.grad_norms
    if not config.gvm_use_grad_norms:
        grad_norms = np.ones_like(grad_norms)
    return allocate(
        grad_norms,
        estimates.accept_rates,
        config.budget,
        config.strategy,
        alpha=config.gvm_alpha,
        beta=config.gvm_beta,
        min_samples=minimum,
        max_samples=config.max_generations,
        max_accept_rate=config.max_accept_rate,
        min_expected_accepted=config.min_expected_accepted,
        reference_size=config.num_generations if config.strategy == "gvm-grpo" else None,
    )


def keep_informative_groups(
    run: Run, batch: PromptBatch, groups: list[list[ScoredSample]], iteration: int
) -> tuple[list[list[ScoredSample]], list[list[ScoredSample]], dict[str, float]]:
    """DAPO's dynamic sampling (dynamic_filtering; otherwise the groups as they are): keep
    groups whose rewards differ, and while fewer than the batch's prompt count remain (at most
    max_filter_rounds times), sample num_generations responses for as many fresh prompts and
    keep their informative groups. Returns the kept groups (at most the prompt count), the
    refill groups (for sample counts) and metrics."""
    config = run.config
    if not config.dynamic_filtering:
        return groups, [], {}
    target = len(groups)

    def informative(group: list[ScoredSample]) -> bool:
        return len({s.reward for s in group}) > 1

    kept = [g for g in groups if informative(g)]
    refills: list[list[ScoredSample]] = []
    used = set(batch.row_ids)
    rounds = 0
    while len(kept) < target and rounds < config.max_filter_rounds:
        rounds += 1
        order = stream_rng(config.seed, Stream.REFILL_PROMPTS, iteration, rounds).permutation(
            len(run.train_rows)
        )
        fresh = [i for i in order.tolist() if run.train_rows[i].row_id not in used][:target]
        if not fresh:
            break
        refill = draw_prompts(run, iteration, fresh)
        refill.group_ids = [target * rounds + i for i in range(refill.size)]
        used.update(refill.row_ids)
        n_samples = [config.num_generations] * refill.size
        new = sample(run, refill, n_samples, iteration, Stream.REFILL, rounds)
        refills.extend(new)
        kept.extend(g for g in new if informative(g))
    metrics = {
        "filter/informative_first_round": sum(informative(g) for g in groups),
        "filter/rounds": rounds,
        "filter/kept_groups": min(len(kept), target),
    }
    return kept[:target], refills, metrics


def old_log_probs_for(run: Run, batch: list[ScoredSample]) -> list[ScoredSample]:
    """The batch with pi_old as configured: the sampler's log-probs, or (old_logprobs =
    recompute, or auto with vLLM) recomputed by the policy, shared across processes."""
    config = run.config
    if config.old_logprobs == "sampler" or (
        config.old_logprobs == "auto" and config.rollout_backend != "vllm"
    ):
        return batch

    def work(items: list[int]) -> list[list[float]]:
        with run.accelerator.autocast():
            return teacher_forced_log_probs(
                run.policy,
                [batch[i] for i in items],
                run.tokenizer.pad_token_id,
                config.temperature,
                config.micro_batch_size,
            )

    loads = [len(s.sample.token_ids) for s in batch]
    return with_old_log_probs(batch, run_shared(run.accelerator, loads, work))


def weighted_batch(
    config: GVMConfig, groups: list[list[ScoredSample]], estimates: PromptStats
) -> list[ScoredSample]:
    """The groups' samples in order, each with its estimator weight (``config.weighting``):
    inverse_acceptance 1/(n_i p_i) (``inverse_acceptance_weights``), scaled to mean 1 over the
    accepted samples; uniform_target the weight that keeps uniform allocation's target
    (``uniform_target_weights``: nbar / n_i, or GRPO's d_nbar(p_i) / d_{n_i}(p_i))."""
    batch = [s for group in groups for s in group]
    if config.weighting == "none":
        return batch
    sizes = np.array([len(g) for g in groups])
    if config.weighting == "uniform_target":
        grpo = config.algorithm == "grpo"
        per_group = uniform_target_weights(
            sizes, estimates.accept_rates, config.num_generations, grpo
        )
        weights = np.repeat(per_group, sizes)
    else:
        weights = np.repeat(inverse_acceptance_weights(sizes, estimates.accept_rates), sizes)
        accepted = np.array([s.accepted for s in batch], dtype=bool)
        if accepted.any():
            weights = weights / weights[accepted].mean()
    return [dataclasses.replace(s, weight=float(w)) for s, w in zip(batch, weights, strict=True)]


def sample(
    run: Run,
    batch: PromptBatch,
    n_samples: list[int],
    iteration: int,
    stream: Stream,
    round_: int = 0,
) -> list[list[ScoredSample]]:
    """n_samples[i] scored samples of the batch's prompt i, generated by the processes sharing
    the requests (balanced by sample count) and gathered on every process."""
    config = run.config
    if not any(n_samples):
        return [[] for _ in n_samples]
    params = SamplingParams(config.temperature, config.top_p, config.max_completion_length)
    rank = run.accelerator.process_index
    offset = config.sampling_seed_offset
    seed = stream_seed(config.seed, stream, iteration, rank, round_, sampling_offset=offset)

    def work(items: list[int]) -> list[list[ScoredSample]]:
        return sample_and_score(
            run.backend,
            [batch.rows[i] for i in items],
            [batch.prompts[i] for i in items],
            [n_samples[i] for i in items],
            params,
            seed,
            run.reward_fn,
            config.accept_threshold,
            [batch.group_ids[i] for i in items],
        )

    groups = run_shared(run.accelerator, n_samples, work)
    check_finite_rewards(run, batch, groups)
    return groups


def check_finite_rewards(run: Run, batch: PromptBatch, groups: list[list[ScoredSample]]) -> None:
    """Refuse a NaN or infinite reward at the batch that produced it, before it reaches an
    advantage (on every process alike: the rewards are gathered)."""
    for i, group in enumerate(groups):
        for sample in group:
            if not math.isfinite(sample.reward):
                raise NonFiniteError(
                    f"the reward function {reward_name(run.reward_fn)} returned {sample.reward} "
                    f"for a completion of prompt {batch.rows[i].problem[:80]!r} (completion "
                    f"{sample.sample.text[:80]!r}): rewards must be finite numbers, or None for "
                    "no reward"
                )


class Timer:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[f"time/{name}"] = now - self._last
        self._last = now
