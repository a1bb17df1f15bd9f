"""Accuracy on held-out prompts: mean accuracy over k samples, greedy accuracy, pass@k and
majority vote.

pass@k uses the unbiased estimator 1 - C(n - c, k) / C(n, k) for n samples of which c are correct
(Chen et al., 2021). Majority vote takes the most frequent final answer (the last boxed content,
whitespace-normalised; ties go to the first seen) and scores that sample.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Sequence
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

from gvm_raft.config import GVMConfig, load_config
from gvm_raft.data import PromptRow, check_group_column, group_name
from gvm_raft.distributed import contiguous_share, gather_all
from gvm_raft.errors import UserError
from gvm_raft.estep import score
from gvm_raft.rewards import RewardFn
from gvm_raft.rewards.boxed import last_boxed
from gvm_raft.rollout.base import RolloutBackend, SamplingParams
from gvm_raft.run import Run, render
from gvm_raft.seeds import Stream, stream_seed


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def majority_correct(
    completions: Sequence[str], rewards: Sequence[float], threshold: float
) -> bool:
    answers = [last_boxed(c) for c in completions]
    voted = [(" ".join(a.split()), i) for i, a in enumerate(answers) if a is not None]
    if not voted:
        return False
    top = Counter(a for a, _ in voted).most_common(1)[0][0]
    first = next(i for a, i in voted if a == top)
    return rewards[first] >= threshold


def evaluate(
    backend: RolloutBackend,
    rows: Sequence[PromptRow],
    prompts: Sequence[str],
    reward_fn: RewardFn,
    samples: int,
    params: SamplingParams,
    seed: int,
    greedy: bool = True,
    threshold: float = 1.0,
    group_column: str | None = None,
) -> dict[str, float]:
    """accuracy (mean over samples), its standard error over prompts (accuracy_se: the standard
    deviation of the per-prompt accuracies / sqrt(prompts), the evaluation's own noise), pass@k,
    maj@k and greedy accuracy over the prompts; with group_column, also the accuracy over the
    prompts of each of that column's values (``group_key``)."""
    metrics: dict[str, float] = {}
    if samples > 0:
        correct, majority = _sampled(
            backend, rows, prompts, reward_fn, samples, params, seed, threshold
        )
        metrics["accuracy"] = float(np.mean(correct / samples))
        metrics["accuracy_se"] = standard_error(correct / samples)
        metrics[f"pass@{samples}"] = float(
            np.mean([pass_at_k(samples, int(c), samples) for c in correct])
        )
        metrics[f"maj@{samples}"] = float(np.mean(majority))
    if greedy:
        greedy_params = SamplingParams(0.0, 1.0, params.max_new_tokens)
        right, _ = _sampled(backend, rows, prompts, reward_fn, 1, greedy_params, seed, threshold)
        metrics["accuracy_greedy"] = float(np.mean(right))
    if samples > 0 and group_column is not None:
        labels = np.array([group_key(group_column, row) for row in rows])
        for label in sorted(set(labels)):
            metrics[label] = float(np.mean(correct[labels == label] / samples))
    return metrics


def group_key(column: str, row: PromptRow) -> str:
    """The metric name of a row's group: accuracy/<column>=<value>."""
    return f"accuracy/{group_name(column, row)}"


def group_counts(column: str | None, rows: Sequence[PromptRow]) -> dict[str, int]:
    """How many of the rows each group of ``column`` holds, by metric name (none without one)."""
    return dict(Counter(group_key(column, row) for row in rows)) if column else {}


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of ``values`` (0 for fewer than two)."""
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def combined_standard_error(errors: Sequence[float], weights: Sequence[float]) -> float:
    """Standard error of sum_j w_j m_j / sum_j w_j for independent means m_j with standard
    errors ``errors``: sqrt(sum_j w_j^2 se_j^2) / sum_j w_j."""
    w = np.asarray(weights, dtype=float)
    return float(np.sqrt(np.sum((w * np.asarray(errors)) ** 2)) / w.sum())


def _sampled(backend, rows, prompts, reward_fn, k, params, seed, threshold):
    generated = backend.generate(prompts, [k] * len(prompts), params, seed)
    owners = [i for i, group in enumerate(generated) for _ in group]
    texts = [s.text for group in generated for s in group]
    rewards = np.array(score(reward_fn, rows, owners, texts)).reshape(len(prompts), k)
    correct = (rewards >= threshold).sum(1)
    majority = [
        majority_correct([s.text for s in group], rewards[i], threshold)
        for i, group in enumerate(generated)
    ]
    return correct, np.array(majority, dtype=float)


def evaluate_benchmarks(
    backend: RolloutBackend,
    benchmarks: dict[str, Sequence[PromptRow]],
    render: Callable[[str], str],
    reward_fn: RewardFn,
    samples: int,
    params: SamplingParams,
    seed: int,
    greedy: bool = True,
    threshold: float = 1.0,
    group_column: str | None = None,
) -> dict[str, dict[str, float]]:
    """``evaluate`` on each named benchmark, plus an ``average`` entry (unweighted mean over
    benchmarks, as papers report it, of the metrics every benchmark has)."""
    results: dict[str, dict[str, float]] = {}
    for name, rows in benchmarks.items():
        prompts = [render(row.problem) for row in rows]
        metrics = evaluate(
            backend,
            rows,
            prompts,
            reward_fn,
            samples,
            params,
            seed,
            greedy,
            threshold,
            group_column,
        )
        results[name] = {"prompts": float(len(rows))} | metrics
    if len(results) > 1:
        keys = [k for k in _columns(results) if all(k in m for m in results.values())]
        average = {
            key: float(np.mean([metrics[key] for metrics in results.values()])) for key in keys
        }
        if "accuracy_se" in keys:
            errors = [metrics["accuracy_se"] for metrics in results.values()]
            average["accuracy_se"] = combined_standard_error(errors, [1.0] * len(errors))
        results["average"] = average
        results["average"]["prompts"] = float(sum(len(rows) for rows in benchmarks.values()))
    return results


def benchmark_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per benchmark, one column per metric (blank where a benchmark
    has no such group)."""
    keys = [k for k in _columns(results) if k != "prompts"]
    lines = [
        "| benchmark | prompts | " + " | ".join(keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for name, metrics in results.items():
        values = " | ".join(f"{metrics[k]:.3f}" if k in metrics else "" for k in keys)
        lines.append(f"| {name} | {int(metrics['prompts'])} | {values} |")
    return "\n".join(lines)


def _columns(results: dict[str, dict[str, float]]) -> list[str]:
    """Every metric name of the results, in order of first appearance."""
    return list(dict.fromkeys(k for metrics in results.values() for k in metrics))


DTYPES = {"no": "float32", "bf16": "bfloat16", "fp16": "float16"}


# gvm-raft eval's settings shared with training: the training config's names and defaults.
EVAL_SETTINGS = (
    "eval_samples",
    "eval_temperature",
    "eval_greedy",
    "eval_max_prompts",
    "eval_group_column",
    "top_p",
    "max_completion_length",
    "reward",
    "accept_threshold",
    "prompt_template",
    "system_prompt",
    "prompt_column",
    "answer_column",
    "rollout_backend",
    "rollout_batch_size",
    "vllm_gpu_memory_utilization",
    "mixed_precision",
    "attn_implementation",
    "seed",
)


def eval_config(config_file: str | None, given: dict[str, Any]) -> GVMConfig:
    """The training config (``config_file``'s or the defaults) with the given settings of
    EVAL_SETTINGS applied (None: not given); its checks name a bad value by its setting."""
    base = load_config(config_file) if config_file else GVMConfig()
    config = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    if not (config.eval_greedy or config.eval_samples):
        raise UserError("eval_samples must be > 0 unless eval_greedy is on")
    return config


def evaluate_model(model_path: str, data_paths: Sequence[str], config: GVMConfig) -> dict:
    """``gvm-raft eval``: the model at model_path on each benchmark file (named by its stem, or
    its path when two stems collide) with the config's evaluation settings; the data and the
    reward are checked before the model loads. Returns ``evaluate_benchmarks``' results."""
    from gvm_raft.data import load_prompts, render_prompt
    from gvm_raft.models import load_tokenizer
    from gvm_raft.rewards import close_reward, load_rewards
    from gvm_raft.rewards.arithmetic import check_integer_answers
    from gvm_raft.rollout import check_backend_available

    repeated = sorted({p for p in data_paths if list(data_paths).count(p) > 1})
    if repeated:
        raise UserError(
            f"{', '.join(map(str, repeated))} given more than once: name each benchmark file once"
        )
    names = [Path(p).stem for p in data_paths]
    if len(set(names)) < len(names):
        names = list(data_paths)
    benchmarks = {
        name: load_prompts(path, config.prompt_column, config.answer_column)[
            : config.eval_max_prompts
        ]
        for name, path in zip(names, data_paths, strict=True)
    }
    for path, rows in zip(data_paths, benchmarks.values(), strict=True):
        check_group_column(config.eval_group_column, rows, path)
        if "arithmetic" in config.reward.split(","):
            check_integer_answers([r.answer for r in rows], path)
    check_backend_available(config.rollout_backend)
    tokenizer = load_tokenizer(model_path, "model")
    rollout = eval_backend(model_path, config, tokenizer)
    reward_fn = load_rewards(config.reward, config.reward_weights, config.reward_timeout)
    try:
        return evaluate_benchmarks(
            rollout,
            benchmarks,
            lambda problem: render_prompt(
                tokenizer, problem, config.prompt_template, config.system_prompt
            ),
            reward_fn,
            config.eval_samples,
            SamplingParams(config.eval_temperature, config.top_p, config.max_completion_length),
            config.seed,
            config.eval_greedy,
            config.accept_threshold,
            config.eval_group_column,
        )
    finally:
        close_reward(reward_fn)


def eval_backend(model_path: str, config: GVMConfig, tokenizer: Any) -> RolloutBackend:
    """The generation backend of ``gvm-raft eval``: transformers generate (weights in the
    dtype of mixed_precision) or a vLLM engine."""
    import torch

    from gvm_raft.models import load_causal_lm
    from gvm_raft.rollout.hf import HFRollout

    if config.rollout_backend == "vllm":
        from gvm_raft.rollout.vllm import VLLMRollout

        return VLLMRollout(model_path, tokenizer, config.vllm_gpu_memory_utilization)
    dtype = getattr(torch, DTYPES[config.mixed_precision])
    model = load_causal_lm(model_path, "model", dtype, config.attn_implementation)
    if torch.cuda.is_available():
        model = model.cuda()
    return HFRollout(model, tokenizer, config.rollout_batch_size)


def combine_shares(shares: Sequence[tuple[dict[str, int], dict[str, float]]]) -> dict[str, float]:
    """The metrics of a test set evaluated in shares (one per process): each share's prompt
    count (and its count per group, ``group_counts``) with its metrics. A metric is the mean of
    the shares' values weighted by their prompts (a group's by the share's prompts in that
    group); accuracy_se combines as independent means (``combined_standard_error``)."""
    parts = [(counts, metrics) for counts, metrics in shares if counts["prompts"]]
    combined = {}
    for key in dict.fromkeys(k for _, metrics in parts for k in metrics):
        weighted = [(c.get(key, c["prompts"]), m[key]) for c, m in parts if key in m]
        combined[key] = sum(w * v for w, v in weighted) / sum(w for w, _ in weighted)
    if "accuracy_se" in combined:
        combined["accuracy_se"] = combined_standard_error(
            [m["accuracy_se"] for _, m in parts], [c["prompts"] for c, _ in parts]
        )
    return combined


def evaluate_policy(run: Run) -> dict[str, float]:
    """A training run's test metrics; the test prompts are split across processes and the
    means recombined."""
    config = run.config
    if not run.test_rows:
        return {}
    tic = time.perf_counter()
    rows = run.test_rows[: config.eval_max_prompts]
    share = contiguous_share(
        len(rows), run.accelerator.process_index, run.accelerator.num_processes
    )
    params = SamplingParams(config.eval_temperature, 1.0, config.max_completion_length)
    mine = [rows[i] for i in share]
    local = (
        evaluate(
            run.backend,
            mine,
            [render(run, r) for r in mine],
            run.reward_fn,
            config.eval_samples,
            params,
            stream_seed(config.seed, Stream.EVALUATION, run.accelerator.process_index),
            config.eval_greedy,
            config.accept_threshold,
            config.eval_group_column,
        )
        if mine
        else {}
    )
    counts = {"prompts": len(mine)} | group_counts(config.eval_group_column, mine)
    metrics = combine_shares(gather_all(run.accelerator, (counts, local)))
    return {f"test/{key}": value for key, value in metrics.items()} | {
        "time/eval": time.perf_counter() - tic
    }
