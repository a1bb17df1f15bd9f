"""Run configuration: one typed dataclass, loaded from YAML plus ``key=value`` overrides.

Field names follow TRL / verl where the concept is the same (num_generations, loss_type,
epsilon, epsilon_high, beta, temperature, max_completion_length). An unknown key is an error
that names it and suggests the closest valid one; the resolved config is saved in the run dir.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gvm_raft.allocation import Strategy
from gvm_raft.errors import ConfigError

AllocationSetting = Literal[
    "uniform",
    "gvm",
    "gvm-rounding",
    "gvm-accuracy",
    "gvm-grpo",
    "uniform-solved",
    "knapsack",
    "gvm-matched",
]
ALLOCATION_SETTINGS: tuple[str, ...] = typing.get_args(AllocationSetting)
# The parameters G_i is measured on (gradnorm.py) and the M-step's loss normaliser (losses.py).
ParameterGroup = Literal["embedding", "lm_head", "lora", "all"]
LossType = Literal["token_mean", "sequence_mean"]


INF = math.inf
# A numeric setting's range: (low, low included, high, high included), checked before anything
# loads; the common ones by name.
Range = tuple[float, bool, float, bool]
AT_LEAST_ONE: Range = (1, True, INF, False)
NON_NEGATIVE: Range = (0, True, INF, False)
POSITIVE: Range = (0, False, INF, False)
FINITE: Range = (-INF, False, INF, False)


def doc(text: str, range: Range | None = None, **kwargs: Any) -> Any:
    """A dataclass field with its documentation and (numeric settings) its range in the
    metadata."""
    return field(metadata={"doc": text, "range": range}, **kwargs)


@dataclass
class GVMConfig:
    # Run
    output_dir: str = doc(
        "run directory: config, metrics, checkpoints, plots", default="runs/train"
    )
    seed: int = doc(
        "seed of data order, sampling and initialisation", default=0, range=NON_NEGATIVE
    )
    sampling_seed_offset: int = doc(
        "added to seed for the rollout sampling only (same prompts, other samples): an A/A "
        "calibration of a comparison runs the same arm with another offset",
        default=0,
        range=NON_NEGATIVE,
    )
    iterations: int = doc(
        "EM iterations (stage 1, allocate, stage 2, update)", default=10, range=AT_LEAST_ONE
    )
    resume: bool = doc("continue from the run directory's latest checkpoint", default=False)
    keep_checkpoints: int = doc("checkpoints kept (the newest)", default=1, range=AT_LEAST_ONE)
    log_completions: int = doc(
        "completions written to completions.jsonl (and trackers) each iteration, drawn at random "
        "from the batch with their prompt, reward, n_i, p_i and G_i (0 = none, -1 = every one)",
        default=8,
        range=(-1, True, INF, False),
    )
    log_with: str | None = doc(
        "accelerate trackers, comma-separated: tensorboard, wandb, ... (None = off)", default=None
    )

    # Model and data
    model_name_or_path: str = doc("Hugging Face causal LM directory (or hub name)", default="")
    train_file: str = doc("training prompts: JSON lines / parquet / dataset directory", default="")
    train_max_prompts: int | None = doc(
        "train on the first n usable training prompts only (None = all): a subset, or several "
        "epochs of one in fewer iterations",
        default=None,
        range=AT_LEAST_ONE,
    )
    test_file: str = doc("held-out prompts for evaluation (empty = no evaluation)", default="")
    prompt_column: str = doc("column holding the problem text", default="problem")
    answer_column: str = doc("column holding the gold answer", default="answer")
    prompt_template: str = doc(
        "'auto' (chat template if the tokenizer has one, else plain), 'chat', 'plain', "
        "or a format string with {problem}",
        default="auto",
    )
    system_prompt: str = doc(
        "system / instruction text for chat templates",
        default="Please reason step by step, and put your final answer within \\boxed{}.",
    )
    reward: str = doc(
        "'arithmetic' (the integer in the last \\boxed{}), 'exact' (the last \\boxed{} content "
        "equals the answer's text), 'math' (the last \\boxed{} answer, by math-verify), "
        "'math-unboxed' (the "
        "same, or without a box the final expression math-verify finds in the completion's "
        "tail), or 'module:function' (TRL-style), or several comma-separated",
        default="math",
    )
    reward_weights: tuple[float, ...] | None = doc(
        "weights of several reward functions (TRL's reward_weights): the reward is the weighted "
        "sum (None = 1 each)",
        default=None,
    )
    accept_threshold: float = doc(
        "a sample is accepted when its reward >= this", default=1.0, range=FINITE
    )
    reward_timeout: float = doc(
        "seconds per math-verify check (reward=math), the workers' start-up excluded",
        default=5.0,
        range=POSITIVE,
    )

    # Sampling
    prompts_per_iteration: int = doc(
        "prompts drawn per iteration (m)", default=64, range=AT_LEAST_ONE
    )
    num_generations: int = doc(
        "samples per prompt on average: budget N = this * m", default=8, range=AT_LEAST_ONE
    )
    stage1_samples: int = doc(
        "stage-1 samples per prompt (k) to estimate p_i and G_i", default=4, range=NON_NEGATIVE
    )
    reuse_stage1: bool = doc(
        "stage-1 samples join the batch and count towards n_i (stage 2 draws n_i - k)",
        default=True,
    )
    temperature: float = doc(
        "sampling temperature (also used in the training log-probs)", default=1.0, range=POSITIVE
    )
    top_p: float = doc("nucleus sampling threshold", default=1.0, range=(0, False, 1, True))
    max_completion_length: int = doc(
        "maximum new tokens per sample", default=256, range=AT_LEAST_ONE
    )
    rollout_backend: Literal["hf", "vllm"] = doc(
        "'hf' (transformers generate, CPU or GPU) or 'vllm' (GPU engine in the trainer process)",
        default="hf",
    )
    rollout_batch_size: int = doc(
        "sequences per generate call (hf backend)", default=128, range=AT_LEAST_ONE
    )
    vllm_gpu_memory_utilization: float = doc(
        "GPU memory fraction of the vLLM engine (the trainer needs the rest)",
        default=0.4,
        range=(0, False, 1, True),
    )

    # Allocation
    allocation: AllocationSetting = doc(
        "'gvm' (the paper's rule: the integer minimiser of sum G_i^2/(n_i p_i), the variance of "
        "the 1/(n_i p_i)-weighted EM gradient), 'gvm-rounding' (the RLHFlow implementation's "
        "rounded continuous optimum), 'gvm-matched' (the rule matched to the M-step, with the "
        "weights that keep uniform allocation's objective: gvm-accuracy for RAFT / RAFT++, "
        "gvm-grpo for GRPO, gvm with sample_weighting=inverse_acceptance), 'gvm-accuracy' "
        "(n_i ∝ G_i sqrt(p_i)), 'gvm-grpo' (GRPO's group estimator), 'uniform' (the baseline), "
        "'uniform-solved' (an even split over the prompts with p_i > 0) or 'knapsack' "
        "(Knapsack-RL, from stage-1 p_i); docs/estimators.md derives each",
        default="gvm",
    )
    gvm_alpha: float = doc(
        "alpha of q = p + alpha / p^(beta - 1)", default=1e-3, range=NON_NEGATIVE
    )
    gvm_beta: float = doc("beta of q = p + alpha / p^(beta - 1)", default=2.0, range=FINITE)
    min_generations: int = doc(
        "minimum samples per prompt (raised to k when reusing)", default=0, range=NON_NEGATIVE
    )
    max_generations: int | None = doc(
        "maximum samples per prompt (None = no cap)", default=None, range=AT_LEAST_ONE
    )
    max_accept_rate: float = doc(
        "prompts with a higher acceptance rate get none (1 = off)",
        default=1.0,
        range=(0, True, 1, True),
    )
    min_expected_accepted: float = doc(
        "prompts expected to yield fewer get none (0 = off)", default=0.0, range=NON_NEGATIVE
    )
    grad_norm_group: ParameterGroup = doc(
        "parameters of G_i: embedding, lm_head, lora (the adapter's) or all (every trained one)",
        default="embedding",
    )
    grad_norm_reduction: Literal["sum", "mean"] = doc(
        "G_i of the summed response log-likelihood (sum, as the RLHFlow implementation) or of "
        "its per-token mean (mean: G_i / T, independent of response length, as a token_mean "
        "loss weighs it)",
        default="sum",
    )
    grad_norm_samples: Literal["accepted", "all"] = doc(
        "the samples G_i measures: 'accepted' (the paper's: their scores are what RAFT and RAFT++ "
        "train) or 'all' (GRPO only: its advantages weigh rejected samples' scores too, so G_i^2 "
        "= (1 - p_i) G_acc^2 + p_i G_rej^2; costs the rejected samples' gradient norms)",
        default="accepted",
    )
    gvm_use_grad_norms: bool = doc(
        "false: G_i = 1 for every prompt (GVM from acceptance rates only, an ablation)",
        default=True,
    )
    online_stats: bool = doc(
        "allocate from a prompt's statistics of its previous visit (no stage 1; needs "
        "stage1_samples=0); unseen prompts get the batch's mean estimates",
        default=False,
    )
    sample_weighting: Literal["none", "inverse_acceptance", "uniform_target"] = doc(
        "per-sample weights of the M-step: 'none' (the token mean over the mini-batch, as in the "
        "paper: its objective moves with the allocation), 'inverse_acceptance' (RAFT / RAFT++: "
        "each accepted sample of prompt i weighted by 1/(n_i p_i), p_i the allocation's "
        "estimate, normalised to mean 1 over the batch's accepted samples: the EM estimator "
        "whose variance gvm minimises) or 'uniform_target' (the weights that keep uniform "
        "allocation's objective: nbar/n_i for RAFT / RAFT++, d_nbar(p_i)/d_{n_i}(p_i) on GRPO's "
        "advantages; allocation=gvm-matched implies them)",
        default="none",
    )
    dynamic_filtering: bool = doc(
        "DAPO: drop groups whose rewards are all equal and refill from further prompts "
        "(num_generations each) until prompts_per_iteration groups remain",
        default=False,
    )
    max_filter_rounds: int = doc(
        "refill rounds of dynamic_filtering at most", default=3, range=NON_NEGATIVE
    )
    accept_rate_prior: tuple[float, float] = doc(
        "Beta(a, b) prior of p_i, posterior mean (accepted + a) / (k + a + b); a prompt with 0 "
        "of k accepted then has p_i > 0 and, G_i being unobserved, its last observed G_i or the "
        "batch's median G_i, so it can still get samples; (0, 0) = the plain ratio (and G_i = 0, "
        "as the RLHFlow implementation)",
        default=(0.0, 0.0),
    )
    stats_decay: float = doc(
        "EMA weight of a revisited prompt's old estimates (G_i blended only when observed, i.e. "
        "something was accepted)",
        default=0.0,
        range=(0, True, 1, False),
    )

    # Algorithm
    algorithm: Literal["raft", "raft++", "grpo"] = doc("M-step loss", default="raft++")
    loss_type: LossType = doc(
        "token_mean (over all the mini-batch's tokens) or sequence_mean", default="token_mean"
    )
    epsilon: float = doc(
        "lower clip range of the importance ratio", default=0.2, range=NON_NEGATIVE
    )
    epsilon_high: float = doc(
        "upper clip range of the importance ratio", default=0.2, range=NON_NEGATIVE
    )
    dual_clip: float | None = doc(
        "dual-clip constant c for negative advantages", default=3.0, range=(1, False, INF, False)
    )
    beta: float = doc(
        "KL coefficient to the KL model (k3 estimator; reference_model chooses it)",
        default=1e-3,
        range=NON_NEGATIVE,
    )
    old_logprobs: Literal["auto", "sampler", "recompute"] = doc(
        "pi_old of the clipped losses: the sampler's log-probs, or recomputed by the training "
        "model (one extra forward, as the RLHFlow implementation; under bf16 vLLM the two "
        "differ); auto = recompute with rollout_backend=vllm, the sampler's otherwise",
        default="auto",
    )
    reference_model: Literal["initial", "iteration_start"] = doc(
        "the KL model: the initial model, or the policy at the start of each EM iteration (the "
        "RLHFlow implementation, which restarts every iteration from its checkpoint)",
        default="initial",
    )
    reset_optimizer_each_iteration: bool = doc(
        "start AdamW's moments and the learning-rate warm-up afresh every EM iteration, as the "
        "RLHFlow implementation does (one optimizer for the whole run when false)",
        default=False,
    )
    singleton_advantage: Literal["reward", "zero"] = doc(
        "GRPO group of one: advantage = reward (the RLHFlow implementation) or 0", default="reward"
    )

    # LoRA (peft; TRL's names)
    use_peft: bool = doc(
        "train a LoRA adapter instead of the whole model (checkpoints hold the adapter)",
        default=False,
    )
    lora_r: int = doc("LoRA rank", default=16, range=AT_LEAST_ONE)
    lora_alpha: int = doc(
        "LoRA scaling numerator (the update is scaled by alpha / r)", default=32, range=AT_LEAST_ONE
    )
    lora_dropout: float = doc(
        "dropout on the LoRA branch's input", default=0.05, range=(0, True, 1, False)
    )
    lora_target_modules: tuple[str, ...] | None = doc(
        "module names that get adapters (None = peft's default for the architecture, e.g. "
        "q_proj and v_proj for Llama; ['all-linear'] = every linear layer but the output)",
        default=None,
    )

    # Optimisation
    learning_rate: float = doc("AdamW learning rate", default=1e-6, range=NON_NEGATIVE)
    weight_decay: float = doc("AdamW weight decay", default=0.01, range=NON_NEGATIVE)
    warmup_steps: int = doc("linear warm-up steps, then constant", default=0, range=NON_NEGATIVE)
    max_grad_norm: float = doc("gradient clipping norm", default=1.0, range=POSITIVE)
    mixed_precision: Literal["no", "bf16", "fp16"] = doc(
        "accelerate autocast for forward/backward (fp32 master weights)", default="no"
    )
    gradient_checkpointing: bool = doc(
        "recompute each decoder layer's activations in the backward pass (less memory, a "
        "slower M-step)",
        default=False,
    )
    attn_implementation: str | None = doc(
        "attention kernel for from_pretrained: sdpa, flash_attention_2, eager (None = "
        "transformers' default)",
        default=None,
    )
    mini_batch_size: int = doc(
        "samples per optimizer step: ceil(batch / this) steps per epoch for every arm (RAFT "
        "splits its accepted samples into as many steps)",
        default=64,
        range=AT_LEAST_ONE,
    )
    micro_batch_size: int = doc(
        "samples per forward/backward (gradient accumulation)", default=16, range=AT_LEAST_ONE
    )
    ppo_epochs: int = doc("passes over each iteration's batch", default=1, range=AT_LEAST_ONE)

    # Evaluation
    eval_samples: int = doc(
        "samples per test prompt at eval_temperature", default=4, range=NON_NEGATIVE
    )
    eval_temperature: float = doc(
        "temperature of the sampled evaluation", default=1.0, range=NON_NEGATIVE
    )
    eval_greedy: bool = doc("also report greedy accuracy", default=True)
    eval_max_prompts: int | None = doc(
        "cap on test prompts (None = all)", default=None, range=AT_LEAST_ONE
    )
    eval_every: int = doc(
        "evaluate every this many iterations (iteration 0 and the last always)",
        default=1,
        range=AT_LEAST_ONE,
    )
    eval_group_column: str | None = doc(
        "a test-set column (e.g. level, family, subject): each of its values also gets its own "
        "sampled accuracy, test/accuracy/<column>=<value>, and allocations.jsonl records each "
        "training prompt's value (None = the whole set only)",
        default=None,
    )

    def __post_init__(self) -> None:
        validate(self)

    @property
    def strategy(self) -> Strategy:
        """The allocation strategy run: ``allocation``, with gvm-matched resolved to the rule
        that minimises the variance of this M-step's estimator (docs/estimators.md)."""
        if self.allocation != "gvm-matched":
            return self.allocation
        if self.algorithm == "grpo":
            return "gvm-grpo"
        return "gvm" if self.sample_weighting == "inverse_acceptance" else "gvm-accuracy"

    @property
    def weighting(self) -> str:
        """The M-step's per-sample weights: ``sample_weighting``, or under gvm-matched the
        weights of the matched estimator (uniform_target, unless inverse_acceptance is set)."""
        if self.allocation == "gvm-matched" and self.sample_weighting == "none":
            return "uniform_target"
        return self.sample_weighting

    @property
    def budget(self) -> int:
        """Stage-2 budget N in samples per iteration (stage 1 included when reused)."""
        return self.num_generations * self.prompts_per_iteration


FIELD_NAMES = [f.name for f in dataclasses.fields(GVMConfig)]


def config_reference() -> str:
    """Every config key with its default and meaning, one line each (the CLI's --help)."""
    return "\n".join(
        f"  {f.name} = {f.default!r}: {f.metadata['doc']}" for f in dataclasses.fields(GVMConfig)
    )


def config_markdown() -> str:
    """docs/configuration.md: every setting with its default and meaning, from GVMConfig
    (regenerate with ``python -m gvm_raft.config > docs/configuration.md``; a test checks it)."""
    rows = [
        f"| `{f.name}` | `{f.default!r}` | {f.metadata['doc'].replace('|', '/')} | "
        + (f"must {_range_text(*f.metadata['range'])}" if f.metadata["range"] else "")
        + " |"
        for f in dataclasses.fields(GVMConfig)
    ]
    return "\n".join(
        [
            "# Configuration",
            "",
            "Every key of a YAML config, of `key=value` overrides and of `GVMConfig(...)`, with "
            "its default. Generated from `src/gvm_raft/config.py` by "
            "`python -m gvm_raft.config > docs/configuration.md`; `gvm-raft train --help` prints "
            "the same list. An unknown key is refused with the closest valid one; numeric keys "
            "are checked against their ranges before anything loads.",
            "",
            "| key | default | meaning | range |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


def validate(config: GVMConfig) -> None:
    _check_types(config)
    _check_ranges(config)
    if config.weighting != "none":
        if config.algorithm == "grpo" and config.weighting == "inverse_acceptance":
            raise ConfigError(
                "sample_weighting=inverse_acceptance applies to RAFT and RAFT++ (accepted "
                "samples); GRPO weights samples by its group-normalised advantages: set "
                "sample_weighting=none or uniform_target"
            )
        if config.dynamic_filtering:
            raise ConfigError(
                "per-sample weights (sample_weighting, or allocation=gvm-matched) and "
                "dynamic_filtering cannot be combined"
            )
    if config.online_stats:
        if config.stage1_samples:
            raise ConfigError("online_stats=true replaces stage 1: set stage1_samples=0")
    elif config.allocation != "uniform" and config.stage1_samples < 1:
        raise ConfigError(
            f"allocation={config.allocation} needs stage1_samples >= 1 to estimate p_i "
            "(or online_stats=true)"
        )
    if config.reuse_stage1 and config.stage1_samples > config.num_generations:
        raise ConfigError(
            f"with reuse_stage1, num_generations ({config.num_generations}) must be at least "
            f"stage1_samples ({config.stage1_samples}): the budget includes the stage-1 samples"
        )
    floor = max(config.min_generations, config.stage1_samples if config.reuse_stage1 else 0)
    if config.allocation != "uniform" and floor >= config.num_generations:
        raise ConfigError(
            f"allocation={config.allocation} has no freedom: every prompt already holds "
            f"{floor} samples (min_generations, or stage1_samples with reuse_stage1) and the "
            f"budget is num_generations ({config.num_generations}) per prompt, so every prompt "
            "would get exactly that (a uniform allocation). Lower stage1_samples or "
            "min_generations, raise num_generations, or set reuse_stage1=false (the RLHFlow "
            "implementation's pipeline: stage 1 only estimates)"
        )
    if config.max_generations is not None and config.max_generations < config.num_generations:
        raise ConfigError(
            f"max_generations ({config.max_generations}) must be at least num_generations "
            f"({config.num_generations}) or the budget cannot be spent"
        )
    if config.min_generations > config.num_generations:
        raise ConfigError(
            f"min_generations ({config.min_generations}) cannot exceed num_generations "
            f"({config.num_generations})"
        )
    if config.grad_norm_samples == "all" and config.algorithm != "grpo":
        raise ConfigError(
            "grad_norm_samples=all measures rejected samples for GRPO's advantages; "
            f"algorithm={config.algorithm} trains accepted samples only: set "
            "grad_norm_samples=accepted"
        )
    if config.grad_norm_group == "lora" and not config.use_peft:
        raise ConfigError("grad_norm_group=lora measures a LoRA adapter: set use_peft=true")
    if not all(0 <= v < math.inf for v in config.accept_rate_prior):
        raise ConfigError(
            f"accept_rate_prior needs finite a, b >= 0; got {config.accept_rate_prior}"
        )


# Every numeric setting's range, from its field. NaN and infinite values are outside every
# range; None (where a setting allows it) means "off".
RANGES: dict[str, Range] = {
    f.name: f.metadata["range"] for f in dataclasses.fields(GVMConfig) if f.metadata["range"]
}


def _check_ranges(config: GVMConfig) -> None:
    for name, (low, low_in, high, high_in) in RANGES.items():
        value = getattr(config, name)
        if value is None:
            continue
        above = value >= low if low_in else value > low
        below = value <= high if high_in else value < high
        if not (above and below and math.isfinite(value)):
            raise ConfigError(f"{name} must {_range_text(low, low_in, high, high_in)}; got {value}")


def _range_text(low: float, low_in: bool, high: float, high_in: bool) -> str:
    if high == INF and low == -INF:
        return "be a finite number"
    if high == INF:
        return f"be {'>=' if low_in else '>'} {low:g} (and finite)"
    return f"lie in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, **defaults: Any
) -> GVMConfig:
    """YAML file (may be None) then ``key=value`` overrides (values parsed as YAML scalars).

    ``defaults`` are applied before the file, for commands that set their own defaults.
    """
    values: dict[str, Any] = dict(defaults)
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys to values")
        values.update(loaded)
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like key=value")
        values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    for key in values:
        _check_key(key)
    return GVMConfig(**values)


# Settings a resumed run may change: the horizon, logging, evaluation, and how the same
# computation is batched or executed. Any other change would make the run's curve a mix of two
# experiments.
RESUMABLE_CHANGES = frozenset(
    {
        "iterations",
        "resume",
        "output_dir",
        "keep_checkpoints",
        "log_with",
        "log_completions",
        "rollout_backend",
        "rollout_batch_size",
        "vllm_gpu_memory_utilization",
        "micro_batch_size",
        "gradient_checkpointing",
        "attn_implementation",
        "test_file",
        "eval_samples",
        "eval_temperature",
        "eval_greedy",
        "eval_max_prompts",
        "eval_every",
        "eval_group_column",
        "reward_timeout",
    }
)


# Settings that say where a run is written and what it logs, not what it computes: two runs
# differing only in these are the same experiment.
BOOKKEEPING_SETTINGS = frozenset(
    {"resume", "output_dir", "keep_checkpoints", "log_with", "log_completions", "eval_group_column"}
)


def differing_settings(
    saved: GVMConfig, config: GVMConfig, may_differ: frozenset[str]
) -> list[str]:
    """The names of the settings, other than ``may_differ``, whose values differ."""
    return [
        name
        for name in FIELD_NAMES
        if name not in may_differ and getattr(saved, name) != getattr(config, name)
    ]


def check_resume_matches(saved: GVMConfig, config: GVMConfig, run_dir: str | Path) -> None:
    """Refuse to resume a run with settings that change what it trains."""
    changed = differing_settings(saved, config, RESUMABLE_CHANGES)
    if changed:
        was = ", ".join(f"{name}={getattr(saved, name)!r}" for name in changed)
        now = ", ".join(f"{name}={getattr(config, name)!r}" for name in changed)
        raise ConfigError(
            f"{run_dir} was trained with {was}; resuming it with {now} would mix two "
            "experiments: choose another output_dir, or restore those settings (iterations, "
            "logging, evaluation and micro_batch_size may change on resume)"
        )


def save_config(config: GVMConfig, path: str | Path) -> None:
    from gvm_raft.fileio import atomic_write_text

    data = dataclasses.asdict(config)
    data = {key: list(value) if isinstance(value, tuple) else value for key, value in data.items()}
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def _check_key(key: str) -> None:
    if key not in FIELD_NAMES:
        close = difflib.get_close_matches(key, FIELD_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown config key {key!r}{hint}")


def _check_types(config: GVMConfig) -> None:
    hints = typing.get_type_hints(GVMConfig)
    for name in FIELD_NAMES:
        value = getattr(config, name)
        coerced = _coerce(value, hints[name], name)
        if coerced is not value:
            object.__setattr__(config, name, coerced)


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Accept value if it fits the annotation (ints for floats, lists for tuples), else fail."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], name)
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads no / off as false and yes / on as true
            words = ("yes", "on", "true") if value else ("no", "off", "false")
            value = next((a for a in args if a in words), value)
        if value not in args:
            raise ConfigError(f"{name} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is tuple and args[-1] is Ellipsis:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list of numbers; got {value!r}")
        return tuple(_coerce(v, args[0], name) for v in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{name} must be a list of {len(args)} numbers; got {value!r}")
        return tuple(_coerce(v, a, name) for v, a in zip(value, args, strict=True))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 5e-5 (no dot) as a string
        except ValueError:
            raise ConfigError(f"{name} must be a number; got {value!r}") from None
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false; got {value!r}")
    if hint in (int, float, str) and (not isinstance(value, hint) or isinstance(value, bool)):
        kind = {int: "a whole number", float: "a number", str: "text"}[hint]
        raise ConfigError(f"{name} must be {kind}; got {value!r}")
    return value


if __name__ == "__main__":
    print(config_markdown(), end="")
