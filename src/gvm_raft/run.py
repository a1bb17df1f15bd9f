"""A run's parts: set-up (model, optimizer, data, rollout backend, reward, trackers), the
policy's sync after an update, and the metrics and allocation logs. Checkpoints and resume
live in checkpoint.py.

Only the main process writes.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gvm_raft.checkpoint import (
    check_resumable,
    check_training_data,
    latest_checkpoint,
    remove_staging,
)
from gvm_raft.config import ConfigError, GVMConfig
from gvm_raft.data import (
    PromptRow,
    check_group_column,
    group_name,
    load_prompts,
    render_prompt,
)
from gvm_raft.estep import ScoredSample
from gvm_raft.models import (
    enable_activation_checkpointing,
    load_causal_lm,
    load_tokenizer,
    lora_config,
    with_adapter,
)
from gvm_raft.mstep import Learner
from gvm_raft.report import COMPLETION_COLUMNS, completions_markdown
from gvm_raft.rewards import RewardFn, close_reward, load_rewards
from gvm_raft.rewards.arithmetic import check_integer_answers
from gvm_raft.rollout import check_backend_available
from gvm_raft.rollout.base import RolloutBackend
from gvm_raft.rollout.hf import HFRollout
from gvm_raft.rundir import append_allocation, append_completions, append_metrics, write_config
from gvm_raft.seeds import Stream, stream_rng, stream_seed
from gvm_raft.sharding import (
    check_engine_available,
    configure_deepspeed,
    loading_whole_models,
    make_replica,
    refresh_replica,
    uses_deepspeed,
    uses_sharding_engine,
)
from gvm_raft.stats import PromptStats, RunningPromptStats


@dataclass
class Run:
    """The parts of a run, built once by ``setup``.

    model: the trained module as the engine prepared it (possibly wrapped and sharded).
    policy: the same policy with whole parameters on this process, for rollouts, gradient
        norms and saving: the unwrapped model, or a replica refreshed after each update when
        the engine shards parameters (see sharding.py).
    """

    config: GVMConfig
    run_dir: Path
    accelerator: Accelerator
    model: torch.nn.Module
    policy: torch.nn.Module
    ref_model: torch.nn.Module | None
    tokenizer: PreTrainedTokenizerBase
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    fresh_scheduler_state: dict  # the schedule's start (reset_optimizer_each_iteration)
    backend: RolloutBackend
    reward_fn: RewardFn
    train_rows: list[PromptRow]
    test_rows: list[PromptRow]
    stats: RunningPromptStats
    totals: dict[str, float]
    progress: bool

    @property
    def learner(self) -> Learner:
        """The M-step's view of the run."""
        return Learner(
            self.accelerator,
            self.model,
            self.ref_model,
            self.optimizer,
            self.scheduler,
            self.tokenizer.pad_token_id,
        )


@dataclass
class Inputs:
    """What a run is given as Python objects (``GVMTrainer``) instead of the config's paths
    and names: each None part is loaded from the config."""

    model: PreTrainedModel | None = None
    tokenizer: PreTrainedTokenizerBase | None = None
    train_rows: list[PromptRow] | None = None
    test_rows: list[PromptRow] | None = None
    reward_fn: RewardFn | None = None
    peft_config: Any = None  # a peft LoraConfig (instead of use_peft and the lora_* keys)


def setup(config: GVMConfig, progress: bool, inputs: Inputs | None = None) -> Run:
    """Load data, reward and model (those not given), and prepare the run directory. Data and
    reward come first, so a bad dataset or reward fails before a large model is loaded."""
    inputs = inputs or Inputs()
    given = {"model_name_or_path": inputs.model, "train_file": inputs.train_rows}
    for key, part in given.items():
        if not getattr(config, key) and part is None:
            raise ConfigError(f"{key} is required: set it in the config or as {key}=PATH")
    run_dir = Path(config.output_dir)
    if not torch.cuda.is_available():  # DeepSpeed's own choice here, without its start-up warning
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # (accelerate imports it when installed)
    main_process = int(os.environ.get("RANK", "0")) == 0  # the engine starts later
    existed = run_dir.exists()
    if main_process:
        remove_staging(run_dir)
    done = check_resumable(config, run_dir)
    if config.resume and existed and not done and progress and main_process:
        print(f"resume=true: {run_dir} holds no checkpoint yet, so this is a new run", flush=True)
    check_engine_available()
    check_backend_available(config.rollout_backend)
    if config.rollout_backend == "vllm" and not config.model_name_or_path:
        raise ConfigError(
            "rollout_backend=vllm starts its engine from a directory: save the model "
            "(save_pretrained) and pass its path, or use rollout_backend=hf"
        )
    train_rows, test_rows = load_datasets(config, inputs.train_rows, inputs.test_rows)
    check_training_data(run_dir, train_rows, resumed=done > 0, write=main_process)
    reward_fn = inputs.reward_fn or load_rewards(
        config.reward, config.reward_weights, config.reward_timeout
    )
    try:
        return _setup_model(
            config,
            progress,
            run_dir,
            inputs,
            train_rows,
            test_rows,
            reward_fn,
            done,
        )
    except BaseException:
        close_reward(reward_fn)
        raise


def load_datasets(
    config: GVMConfig,
    train_rows: list[PromptRow] | None = None,
    test_rows: list[PromptRow] | None = None,
) -> tuple[list[PromptRow], list[PromptRow]]:
    """The training and (optional) test prompts, those not given read from the config's
    files, the training ones cut to the first train_max_prompts; the training set must fill one
    iteration (and, with online statistics, a warning when the run never revisits a prompt)."""
    if train_rows is None:
        train_rows = load_prompts(config.train_file, config.prompt_column, config.answer_column)
    train_rows = train_rows[: config.train_max_prompts]
    if len(train_rows) < config.prompts_per_iteration:
        capped = (
            f" (train_max_prompts={config.train_max_prompts})"
            if config.train_max_prompts == len(train_rows)
            else ""
        )
        raise ConfigError(
            f"prompts_per_iteration={config.prompts_per_iteration} exceeds the "
            f"{len(train_rows)} usable prompts of {config.train_file or 'train_dataset'}{capped}: "
            "lower prompts_per_iteration or use a larger training set"
        )
    visits = config.iterations * config.prompts_per_iteration
    if config.online_stats and visits <= len(train_rows):
        warnings.warn(
            f"online_stats=true: {config.iterations} iterations of "
            f"{config.prompts_per_iteration} prompts visit each of the {len(train_rows)} training "
            "prompts at most once, so none has statistics from a previous visit: every prompt "
            "gets its batch's mean estimates and the allocation is uniform; train for more than "
            "one epoch, or measure on a stage 1 (online_stats=false, stage1_samples >= 1)",
            stacklevel=2,
        )
    if test_rows is None and config.test_file:
        test_rows = load_prompts(config.test_file, config.prompt_column, config.answer_column)
    check_group_column(config.eval_group_column, test_rows or [], config.test_file or "test")
    if isinstance(config.reward, str) and "arithmetic" in config.reward.split(","):
        check_integer_answers([r.answer for r in train_rows], config.train_file or "train_dataset")
        check_integer_answers([r.answer for r in test_rows or []], config.test_file or "test")
    return train_rows, test_rows or []


def _setup_model(
    config: GVMConfig,
    progress: bool,
    run_dir: Path,
    given: Inputs,
    train_rows: list[PromptRow],
    test_rows: list[PromptRow],
    reward_fn: RewardFn,
    done: int,
) -> Run:
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=config.mixed_precision,
        log_with=trackers(config.log_with),
        project_dir=str(run_dir),
    )
    checkpoint = latest_checkpoint(run_dir) if config.resume else None
    source = checkpoint / "model" if checkpoint else Path(config.model_name_or_path)
    tokenizer = given.tokenizer or load_tokenizer(config.model_name_or_path)
    kernel = config.attn_implementation
    adapter = given.peft_config
    if adapter is None and config.use_peft:
        adapter = lora_config(
            config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_target_modules
        )
    if adapter is not None and uses_sharding_engine(accelerator):
        raise ConfigError(
            "use_peft (LoRA) runs under DDP or on one device, not under FSDP or DeepSpeed: "
            "launch without a sharding config"
        )
    needs_reference = config.algorithm != "raft" and config.beta > 0
    with loading_whole_models(accelerator):
        initial = given.model  # the KL model's weights; the policy's unless resuming
        if initial is None and (checkpoint is None or needs_reference or adapter is not None):
            initial = load_causal_lm(config.model_name_or_path, attn_implementation=kernel)
        ref_model = None
        if adapter is not None:  # the KL model: the base with the adapter off (see mstep)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(stream_seed(config.seed, Stream.ADAPTER_INIT))
                model = with_adapter(initial, adapter, source if checkpoint else None)
            if needs_reference and config.reference_model == "iteration_start":
                ref_model = copy.deepcopy(model)
        else:
            model = initial
            if checkpoint is not None:
                model = load_causal_lm(source, "checkpoint", attn_implementation=kernel)
            if needs_reference:
                ref_model = copy.deepcopy(initial) if model is initial else initial
    if config.gradient_checkpointing:
        enable_activation_checkpointing(model)
    if ref_model is not None:
        ref_model.requires_grad_(False).eval().to(accelerator.device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    warmup = config.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
    )
    fresh_scheduler_state = scheduler.state_dict()
    if config.reset_optimizer_each_iteration and uses_deepspeed(accelerator):
        raise ConfigError(
            "reset_optimizer_each_iteration is not supported under DeepSpeed (its optimizer "
            "state is the engine's): use DDP or FSDP, or set it to false"
        )
    configure_deepspeed(accelerator, config.micro_batch_size, config.max_grad_norm)
    replica = make_replica(accelerator, model)
    model, optimizer = accelerator.prepare(model, optimizer)
    policy = replica if replica is not None else accelerator.unwrap_model(model)
    if accelerator.is_main_process and (done == 0 or done < config.iterations):
        write_config(config, run_dir)  # a finished run's record stays as it was
    accelerator.wait_for_everyone()
    if config.log_with:
        accelerator.init_trackers("gvm-raft", config={k: str(v) for k, v in vars(config).items()})
    backend = make_backend(
        config, source, policy, tokenizer, progress and accelerator.is_main_process
    )
    return Run(
        config=config,
        run_dir=run_dir,
        accelerator=accelerator,
        model=model,
        policy=policy,
        ref_model=ref_model,
        tokenizer=tokenizer,
        optimizer=optimizer,
        scheduler=scheduler,
        fresh_scheduler_state=fresh_scheduler_state,
        backend=backend,
        reward_fn=reward_fn,
        train_rows=train_rows,
        test_rows=test_rows,
        stats=RunningPromptStats(config.stats_decay, config.accept_rate_prior),
        totals={
            key: 0.0
            for key in ("samples/stage1", "samples/stage2", "tokens/stage1", "tokens/stage2")
        },
        progress=progress,
    )


def trackers(log_with: str | None) -> list[str] | None:
    """accelerate tracker names from "tensorboard" / "tensorboard,wandb"; each must be installed."""
    if not log_with:
        return None
    import accelerate.tracking
    import accelerate.utils

    names = [name.strip() for name in log_with.split(",") if name.strip()]
    for name in names:
        if name not in accelerate.tracking.LOGGER_TYPE_TO_CLASS:
            known = ", ".join(accelerate.tracking.LOGGER_TYPE_TO_CLASS)
            raise ConfigError(f"log_with={log_with}: unknown tracker {name!r} (known: {known})")
        if not getattr(accelerate.utils, f"is_{name}_available")():
            raise ConfigError(
                f"log_with={log_with}: the {name} package is not installed (pip install {name})"
            )
    return names


def make_backend(
    config: GVMConfig,
    source: Path,
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    progress: bool,
) -> RolloutBackend:
    """The configured rollout backend; vLLM starts from the weights the trainer loaded."""
    if config.rollout_backend == "hf":
        return HFRollout(model, tokenizer, config.rollout_batch_size, progress)
    from gvm_raft.rollout.vllm import VLLMRollout

    return VLLMRollout(source, tokenizer, config.vllm_gpu_memory_utilization, progress=progress)


def sync_policy(run: Run) -> None:
    """After an update: refresh the whole-parameter policy (when sharded) and the backend."""
    if run.policy is not run.accelerator.unwrap_model(run.model):
        refresh_replica(run.model, run.policy)
    run.backend.sync_weights(run.policy)


def log(run: Run, metrics: dict) -> None:
    """Append the row to metrics.jsonl, send it to trackers, print a one-line summary."""
    if not run.accelerator.is_main_process:
        return
    append_metrics(run.run_dir, metrics)
    if run.config.log_with:
        run.accelerator.log(
            {k: v for k, v in metrics.items() if k != "iteration"}, step=metrics["iteration"]
        )
    if run.progress:
        print(summary_line(metrics), flush=True)


SUMMARY_FIELDS = [
    ("test/accuracy", "test acc", "{:.3f}"),
    ("test/accuracy_greedy", "greedy", "{:.3f}"),
    ("train/accept_rate", "train acc", "{:.3f}"),
    ("train/loss", "loss", "{:.3f}"),
    ("allocation/min", "n_i min", "{:.0f}"),
    ("allocation/max", "max", "{:.0f}"),
    ("allocation/variance_ratio", "var/uniform", "{:.3f}"),
    ("samples/cumulative", "samples", "{:.0f}"),
    ("time/iteration", "s", "{:.0f}"),
]


def summary_line(metrics: dict) -> str:
    """The console's line per iteration: accuracy, acceptance, loss, the allocation's spread
    (n_i from min to max) and variance against uniform, samples so far and seconds."""
    parts = [f"iteration {metrics['iteration']}"]
    parts += [
        f"{label} {form.format(metrics[key])}"
        for key, label, form in SUMMARY_FIELDS
        if key in metrics
    ]
    return " | ".join(parts)


def record_allocation(
    run: Run,
    iteration: int,
    rows: list[PromptRow],
    estimates: PromptStats,
    n_samples: np.ndarray,
    fallback: str | None,
) -> None:
    """The iteration's prompts (dataset row ids), their estimated p_i and G_i, the samples
    each got, why the strategy fell back to uniform (null when it did not) and, with
    eval_group_column set, each prompt's group "<column>=<value>" (null where the training row
    has no such value)."""
    if not run.accelerator.is_main_process:
        return
    row = {
        "iteration": iteration,
        "row_id": [r.row_id for r in rows],
        "accept_rate": estimates.accept_rates.tolist(),
        "grad_norm": estimates.grad_norms.tolist(),
        "n_samples": n_samples.tolist(),
        "fallback": fallback,
    }
    column = run.config.eval_group_column
    if column is not None:
        row["group"] = [group_name(column, r) for r in rows]
    append_allocation(run.run_dir, row)


def record_completions(
    run: Run,
    iteration: int,
    rows: list[PromptRow],
    groups: list[list[ScoredSample]],
    estimates: PromptStats,
) -> None:
    """log_completions of the batch's samples, drawn at random: prompt, completion, reward,
    acceptance, and the prompt's n_i, p_i and G_i, to completions.jsonl and the trackers."""
    count = run.config.log_completions
    if not run.accelerator.is_main_process or count == 0:
        return
    owned = [(i, s) for i, group in enumerate(groups) for s in group]
    if 0 < count < len(owned):
        rng = stream_rng(run.config.seed, Stream.COMPLETION_LOG, iteration)
        owned = [owned[j] for j in sorted(rng.choice(len(owned), count, replace=False))]
    records = [
        {
            "iteration": iteration,
            "row_id": rows[i].row_id,
            "prompt": rows[i].problem,
            "completion": s.sample.text,
            "reward": s.reward,
            "accepted": s.accepted,
            "n_samples": len(groups[i]),
            "accept_rate": float(estimates.accept_rates[i]),
            "grad_norm": float(estimates.grad_norms[i]),
        }
        for i, s in owned
    ]
    append_completions(run.run_dir, records)
    if run.config.log_with:
        send_completions(run.accelerator, records, iteration)


def send_completions(accelerator: Accelerator, records: list[dict], step: int) -> None:
    """The completions as a table for the trackers that show one, as TRL's log_completions:
    TensorBoard text (markdown) and a wandb Table."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_text("completions", completions_markdown(records), step)
        elif tracker.name == "wandb":
            import wandb

            rows = [
                [str(r[c]) if c == "prompt" else r[c] for c in COMPLETION_COLUMNS] for r in records
            ]
            table = wandb.Table(columns=list(COMPLETION_COLUMNS), data=rows)
            tracker.log({"completions": table}, step=step)


def render(run: Run, row: PromptRow) -> str:
    """A prompt row as the policy sees it: through the configured template."""
    return render_prompt(
        run.tokenizer, row.problem, run.config.prompt_template, run.config.system_prompt
    )
