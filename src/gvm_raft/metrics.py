"""An iteration's metrics row, by part: generation counts, rewards and acceptance, the
allocation's spread and estimated variance, the processes' loads, device memory. Pure
functions of what the iteration produced (the run's cumulative totals are kept by the loop)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from gvm_raft.allocation import allocation_summary
from gvm_raft.distributed import lpt_assign, worker_loads
from gvm_raft.estep import ScoredSample
from gvm_raft.stats import PromptStats

Groups = list[list[ScoredSample]]


def generation_counts(stage1: Groups, stage2: Groups) -> dict[str, int]:
    """Samples and tokens generated in stage 1 and in stage 2 (refills included)."""
    counts = {}
    for name, stage in (("stage1", stage1), ("stage2", stage2)):
        flat = [s for g in stage for s in g]
        counts[f"samples/{name}"] = len(flat)
        counts[f"tokens/{name}"] = sum(len(s.sample.token_ids) for s in flat)
    return counts


def sample_metrics(
    stage1: Groups,
    stage2: Groups,
    groups: Groups,
    counts: Mapping[str, int],
    totals: Mapping[str, float],
    reward_checks: Mapping[str, float],
) -> dict[str, float]:
    """Generation counts (``counts``: ``generation_counts`` of the two stages) and acceptance
    per stage, the verifier's checks so far, rewards and acceptance of the M-step's groups, and
    the cumulative counts (``totals``, this iteration included)."""
    out: dict[str, float] = {}
    for name, stage in (("stage1", stage1), ("stage2", stage2)):
        flat = [s for g in stage for s in g]
        out[f"samples/{name}"] = counts[f"samples/{name}"]
        out[f"tokens/{name}"] = counts[f"tokens/{name}"]
        out[f"{name}/accept_rate"] = float(np.mean([s.accepted for s in flat])) if flat else 0.0
    out |= {f"reward/{key}": value for key, value in reward_checks.items()}
    flat = [s for g in groups for s in g]
    rewards = [s.reward for s in flat]
    zero_std = [len(g) > 0 and len({s.reward for s in g}) == 1 for g in groups]
    return out | {
        "train/reward_mean": float(np.mean(rewards)) if rewards else 0.0,
        "train/accept_rate": float(np.mean([s.accepted for s in flat])) if flat else 0.0,
        "train/samples": len(flat),
        "train/truncated_fraction": float(
            np.mean([s.sample.finish_reason == "length" for s in flat])
        )
        if flat
        else 0.0,
        "frac_reward_zero_std": float(np.mean(zero_std)),
        "samples/cumulative": totals["samples/stage1"] + totals["samples/stage2"],
        "tokens/cumulative": totals["tokens/stage1"] + totals["tokens/stage2"],
    }


def allocation_metrics(
    n_samples: np.ndarray,
    stage2_n_samples: np.ndarray,
    estimates: PromptStats,
    fallback: str | None,
) -> dict[str, float]:
    """Spread of the batch's samples per prompt and its estimated gradient variance vs
    uniform; whether the strategy fell back to uniform."""
    summary = allocation_summary(n_samples, estimates.grad_norms, estimates.accept_rates)
    return {
        "allocation/min": summary["min"],
        "allocation/median": summary["median"],
        "allocation/max": summary["max"],
        "allocation/gini": summary["gini"],
        "allocation/prompts_without_stage2": int((stage2_n_samples == 0).sum()),
        "allocation/variance": summary["variance"],
        "allocation/variance_uniform": summary["variance_uniform"],
        "allocation/variance_ratio": summary["variance_ratio"],
        "allocation/fallback": int(fallback is not None),
    }


def process_load_metrics(stage2_n_samples: np.ndarray, world: int) -> dict[str, float]:
    """Stage-2 samples of the busiest and idlest process (requests balanced by LPT)."""
    loads = stage2_n_samples.tolist()
    process_loads = worker_loads(loads, lpt_assign(loads, world), world)
    return {
        "stage2/max_process_samples": max(process_loads),
        "stage2/min_process_samples": min(process_loads),
    }


def device_memory_metrics() -> dict[str, float]:
    """The most GPU memory this process has held at once since it started, in GiB (nothing on
    a machine without a GPU)."""
    if not torch.cuda.is_available():
        return {}
    return {"memory/peak_gib": torch.cuda.max_memory_allocated() / 2**30}
