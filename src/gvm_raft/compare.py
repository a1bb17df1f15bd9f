"""Compare allocation strategies against uniform allocation, over seeds (``gvm-raft compare``).

Every arm trains from the same base model on the same train/test split with the same seeds,
the same stage-2 budget N per iteration, the same number of iterations and (except the
``gvm-steps-xn`` confound) the same optimizer steps per iteration; arms differ only in their
config overrides. Runs resume, so a killed benchmark continues where it stopped.

Arms are paired: seed s of every arm starts from the same model, draws the same prompts in the
same order and is evaluated with the same evaluation seed; they differ in their overrides
(the A/A arm ``uniform-aa`` differs from uniform only in its sampling seeds, so its figures
show how large a difference chance alone produces: the smallest effect the harness resolves).

The statistics are compare_stats.py's, the tables and plots compare_report.py's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gvm_raft.compare_report import write_results
from gvm_raft.config import BOOKKEEPING_SETTINGS, GVMConfig, differing_settings, load_config
from gvm_raft.errors import UserError
from gvm_raft.rundir import comparison_run_dir, has_config, read_config, read_metrics
from gvm_raft.trainer import train


@dataclass(frozen=True)
class Arm:
    """One configuration of the comparison: a name and its config overrides."""

    name: str
    algorithm: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.algorithm}/{self.name}"


ARM_STRATEGIES: dict[str, dict[str, Any]] = {
    "uniform": {"allocation": "uniform"},
    "uniform-aa": {"allocation": "uniform", "sampling_seed_offset": 1_000},
    "gvm": {"allocation": "gvm"},
    "gvm-matched": {"allocation": "gvm-matched"},
    "knapsack": {"allocation": "knapsack"},
    "dapo": {"allocation": "uniform", "dynamic_filtering": True},
}


def ablations(num_generations: int, mini_batch_size: int) -> dict[str, dict[str, Any]]:
    """GVM variants: G_i = 1, G_i of the per-token mean log-likelihood, alpha = 0, a Beta(1, 1)
    prior on p_i (a prompt with 0 of k accepted still gets samples), a smaller stage 1, online
    statistics, the RLHFlow implementation's confound (num_generations times more optimizer steps)
    and its control (uniform with as many steps), uniform with 4x the steps (a mini-batch a
    quarter the size: the sweep's middle point against uniform), uniform and GVM with the
    1/(n_i p_i)-weighted M-step (the estimator whose variance GVM minimises), GVM with the
    weights that keep uniform's objective, an even split over the prompts solved in stage 1 with
    those weights (what not sampling unsolved prompts alone gives), the matched strategy with G_i
    measured on every sample (GRPO: rejected samples' scores enter its gradient), and on online
    statistics, alone and with every prompt kept at 4 samples (the floor a reused stage 1 of
    k = 4 gives), and on a stage 1 that only measures (`reuse_stage1=false`: statistics of the
    current policy, the whole budget allocated by the rule and no floor, as online), alone and
    with the 4-sample floor (fresh samples: n_i is not coupled to samples it trains on)."""
    fewer = max(1, mini_batch_size // num_generations)
    matched_online = {"allocation": "gvm-matched", "online_stats": True, "stage1_samples": 0}
    matched_unreused = {"allocation": "gvm-matched", "reuse_stage1": False}
    return {
        "gvm-G=1": {"allocation": "gvm", "gvm_use_grad_norms": False},
        "gvm-G=mean": {"allocation": "gvm", "grad_norm_reduction": "mean"},
        "gvm-alpha=0": {"allocation": "gvm", "gvm_alpha": 0.0},
        "gvm-prior": {"allocation": "gvm", "accept_rate_prior": "[1, 1]"},
        "gvm-k=2": {"allocation": "gvm", "stage1_samples": 2},
        "gvm-online": {"allocation": "gvm", "online_stats": True, "stage1_samples": 0},
        f"gvm-steps-x{num_generations}": {"allocation": "gvm", "mini_batch_size": fewer},
        f"uniform-steps-x{num_generations}": {"allocation": "uniform", "mini_batch_size": fewer},
        "uniform-steps-x4": {
            "allocation": "uniform",
            "mini_batch_size": max(1, mini_batch_size // 4),
        },
        "uniform-weighted": {"allocation": "uniform", "sample_weighting": "inverse_acceptance"},
        "gvm-weighted": {"allocation": "gvm", "sample_weighting": "inverse_acceptance"},
        "gvm-reweighted": {"allocation": "gvm", "sample_weighting": "uniform_target"},
        "solved-reweighted": {
            "allocation": "uniform-solved",
            "sample_weighting": "uniform_target",
        },
        "matched-G=all": {"allocation": "gvm-matched", "grad_norm_samples": "all"},
        "matched-online": matched_online,
        "matched-online-min=4": {**matched_online, "min_generations": 4},
        "matched-reuse=false": matched_unreused,
        "matched-reuse=false-min=4": {**matched_unreused, "min_generations": 4},
    }


def make_arms(
    algorithms: Sequence[str],
    strategies: Sequence[str],
    ablation_names: Sequence[str],
    num_generations: int,
    mini_batch_size: int,
    ablation_algorithms: Sequence[str] | None = None,
) -> list[Arm]:
    """Every strategy for every algorithm; the ablations for ``ablation_algorithms`` (None: the
    first algorithm only), each algorithm's right after its strategies (so a benchmark cut
    short has the first algorithm complete)."""
    variants = ablations(num_generations, mini_batch_size)
    unknown = [s for s in strategies if s not in ARM_STRATEGIES] + [
        a for a in ablation_names if a not in variants
    ]
    if unknown:
        known = ", ".join([*ARM_STRATEGIES, *variants])
        raise UserError(f"unknown arms {', '.join(unknown)} (known: {known})")
    with_ablations = algorithms[:1] if ablation_algorithms is None else ablation_algorithms
    arms = []
    for algorithm in algorithms:
        arms += [Arm(s, algorithm, ARM_STRATEGIES[s]) for s in strategies]
        if algorithm in with_ablations:
            arms += [Arm(name, algorithm, variants[name]) for name in ablation_names]
    return arms


def run_arms(
    arms: Iterable[Arm],
    seeds: Sequence[int],
    base_config: str | Path,
    out_dir: Path,
    overrides: Sequence[str] = (),
    progress: bool = True,
    train_missing: bool = True,
    arm_seeds: dict[str, Sequence[int]] | None = None,
    reuse_from: Sequence[Path] = (),
) -> dict[str, list[list[dict]]]:
    """Train (or resume, or just read) every arm for every seed; metric rows per arm and seed.

    Seed by seed (every arm for seed 0, then for seed 1, ...), so a comparison cut short has
    every arm paired. arm_seeds[name] restricts the arm of that name to some of the seeds.
    With train_missing False nothing is trained: only finished runs are read, and arms without
    any are left out (a report on a comparison still running). A run missing from out_dir whose
    twin (same arm and seed, same settings but where it is written) has finished in another
    comparison directory of reuse_from is linked, not trained again.
    """
    arms = list(arms)
    if len(set(seeds)) != len(seeds):
        raise UserError(f"seeds {list(seeds)} repeat a seed: each seed is one paired replicate")
    owned = sorted({item.partition("=")[0].strip() for item in overrides} & COMPARE_SETTINGS)
    if owned:
        raise UserError(
            f"{', '.join(owned)} cannot be overridden in a comparison: it sets them for every "
            "arm and seed itself (--seeds, --out); drop the override"
        )
    for arm in arms:  # a bad arm fails now, not after the arms before it have trained
        _arm_config(arm, seeds[0], base_config, out_dir, overrides)
    found: dict[str, dict[int, list[dict]]] = {arm.label: {} for arm in arms}
    for seed in seeds:
        for arm in arms:
            if arm_seeds is not None and seed not in arm_seeds.get(arm.name, seeds):
                continue
            rows = _train_or_read(
                arm, seed, base_config, out_dir, overrides, progress, train_missing, reuse_from
            )
            if rows is not None:
                found[arm.label][seed] = rows
    return {label: [runs[s] for s in seeds if s in runs] for label, runs in found.items() if runs}


# What the harness sets for every run itself, over what the config file says: a file's own seed
# or output_dir (the paper configs set one) would otherwise make every seed the same run.
COMPARE_SETTINGS = frozenset({"seed", "output_dir", "resume"})


def _train_or_read(
    arm: Arm,
    seed: int,
    base_config: str | Path,
    out_dir: Path,
    overrides: Sequence[str],
    progress: bool,
    train_missing: bool,
    reuse_from: Sequence[Path],
) -> list[dict] | None:
    """The finished run's metric rows of one arm and seed (linked to its finished twin in
    reuse_from, or else trained, when missing)."""
    run_dir = _run_dir(out_dir, arm, seed)
    config = _arm_config(arm, seed, base_config, out_dir, overrides)
    if not run_dir.exists():
        twin = _finished_twin(config, arm, seed, reuse_from)
        if twin is not None:
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            run_dir.symlink_to(os.path.relpath(twin, run_dir.parent), target_is_directory=True)
    if not train_missing and has_config(run_dir):
        changed = differing_settings(read_config(run_dir), config, BOOKKEEPING_SETTINGS)
        if changed:
            print(
                f"warning: {run_dir} was trained with other settings ({', '.join(changed)}): "
                "left out of the report",
                file=sys.stderr,
            )
            return None
    rows = read_metrics(run_dir)
    if len(rows) <= config.iterations and train_missing:
        if progress:
            print(f"== {arm.label} seed {seed} -> {run_dir}", flush=True)
        train(config, progress=progress)
        rows = read_metrics(run_dir)
    return rows if len(rows) == config.iterations + 1 else None


def _arm_config(
    arm: Arm, seed: int, base_config: str | Path, out_dir: Path, overrides: Sequence[str]
) -> GVMConfig:
    """The settings of one arm's run for one seed; an error names the arm."""
    arm_overrides = [f"{k}={v}" for k, v in arm.overrides.items()]
    own = [
        f"algorithm={arm.algorithm}",
        f"output_dir={_run_dir(out_dir, arm, seed)}",
        f"seed={seed}",
        "resume=true",
    ]
    try:
        config = load_config(base_config, [*overrides, *arm_overrides, *own])
    except UserError as err:
        raise type(err)(f"arm {arm.label}: {err}") from None
    if config.eval_every != 1:
        raise UserError("eval_every must be 1: the speed-ups compare accuracy at every iteration")
    return config


def _run_dir(out_dir: Path, arm: Arm, seed: int) -> Path:
    return comparison_run_dir(out_dir, arm.algorithm, arm.name, seed)


def _finished_twin(
    config: GVMConfig, arm: Arm, seed: int, comparisons: Sequence[Path]
) -> Path | None:
    """The first finished run of this algorithm and seed in one of the comparison directories
    that was trained with the same settings as config (up to where it is written and what it
    logs): the same arm's first, then any other arm's (a sweep's uniform at mini_batch_size=8 is
    the comparison's uniform-steps-x8)."""
    for comparison in comparisons:
        same_arm = _run_dir(comparison, arm, seed)
        others = sorted(same_arm.parent.parent.glob(f"*/seed-{seed}"))
        for candidate in [same_arm, *(c for c in others if c != same_arm)]:
            candidate = candidate.resolve()
            if len(read_metrics(candidate)) != config.iterations + 1:
                continue
            if not differing_settings(read_config(candidate), config, BOOKKEEPING_SETTINGS):
                return candidate
    return None


def compare(
    config_file: str,
    overrides: Sequence[str],
    arm_names: Sequence[str],
    algorithms: Sequence[str] | None,
    seeds: Sequence[int],
    out_dir: str | Path,
    progress: bool = True,
    train_missing: bool = True,
) -> str:
    """``gvm-raft compare``: every arm (strategies and ablations by name; uniform among them)
    for every algorithm (default: the config's) and seed, then results.md; returns its text."""
    if "uniform" not in arm_names:
        raise UserError("--arms must include uniform: every comparison is against it")
    config = load_config(config_file, overrides)
    algorithms = list(algorithms or [config.algorithm])
    arms = make_arms(
        algorithms,
        [a for a in arm_names if a in ARM_STRATEGIES],
        [a for a in arm_names if a not in ARM_STRATEGIES],
        config.num_generations,
        config.mini_batch_size,
    )
    out = Path(out_dir)
    results = run_arms(
        arms, seeds, config_file, out, overrides, progress=progress, train_missing=train_missing
    )
    baselines = {a: f"{a}/uniform" for a in algorithms if f"{a}/uniform" in results}
    return write_results(results, out, baselines)
