"""Accepted and rejected samples' score norms, and what they do to GRPO's matched allocation.

docs/estimators.md's assumption A3 takes a prompt's accepted-sample score norm G_i for the
second moment of every score its estimator sums. RAFT and RAFT++ sum accepted samples only;
GRPO's advantages weigh rejected ones too. This script measures both kinds on the world's base
model: --samples responses for each prompt of the convergence benchmark's first --batches
iterations (seed 0), each response's score norm ||grad sum_t log pi|| on the benchmark's
parameter group. It prints, per acceptance bin of the mixed prompts (0 < p < 1), the mean
accepted and rejected norms, their median ratio and the mean response lengths; then per batch,
with these measurements taken as the truth, GRPO's variance weighted to uniform's target
(``estimators.grpo_variance`` with both norms) of the matched allocation (gvm-grpo, the
benchmark's budget and stage-1 floor) from accepted norms only (grad_norm_samples=accepted) and
from both (=all), each over uniform allocation's; and the ratio the accepted-only model predicts
for the former (what ``benchmarks/estimator_variance.py`` reports for the runs).

Run: .venv/bin/python benchmarks/score_norms.py [--batches 2] [--samples 8]
(about 2 minutes on 2 CPU cores; the figures depend on the world's build, so on the processor)
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass

import numpy as np

from gvm_raft.config import GVMConfig, load_config
from gvm_raft.demo import bundled_config
from gvm_raft.estep import ScoredSample, sample_score_norms
from gvm_raft.estimators import both_norms, grpo_grad_norm, grpo_variance
from gvm_raft.run import Run, setup
from gvm_raft.seeds import Stream
from gvm_raft.stats import PromptStats
from gvm_raft.tasks.demo_world import open_world, world_overrides
from gvm_raft.trainer import allocate_samples, draw_prompts, sample

BINS = ((0.0, 0.25), (0.25, 0.5), (0.5, 1.0))


@dataclass
class Measured:
    """Per prompt: acceptance rate, mean accepted and rejected norms (NaN: none), lengths."""

    accept_rate: np.ndarray
    accepted_norm: np.ndarray
    rejected_norm: np.ndarray
    accepted_length: np.ndarray
    rejected_length: np.ndarray


def measure_batch(run: Run, groups: list[list[ScoredSample]]) -> Measured:
    """Every sample's score norm (``sample_score_norms``), averaged per prompt and kind."""
    flat = [(i, s) for i, group in enumerate(groups) for s in group if s.sample.token_ids]
    config = run.config
    norms = sample_score_norms(
        run.policy,
        [s for _, s in flat],
        run.tokenizer.pad_token_id,
        config.grad_norm_group,
        config.micro_batch_size,
        config.grad_norm_reduction,
    )
    by_kind: dict[tuple[int, bool], list[tuple[float, int]]] = {}
    for (i, s), norm in zip(flat, norms, strict=True):
        by_kind.setdefault((i, s.accepted), []).append((norm, len(s.sample.token_ids)))

    def mean(accepted: bool, column: int) -> np.ndarray:
        values = [[v[column] for v in by_kind.get((i, accepted), [])] for i in range(len(groups))]
        return np.array([np.mean(v) if v else np.nan for v in values])

    rates = np.array([np.mean([s.accepted for s in g]) for g in groups])
    return Measured(rates, mean(True, 0), mean(False, 0), mean(True, 1), mean(False, 1))


def variance_ratios(config: GVMConfig, measured: Measured) -> tuple[float, float, float]:
    """GRPO's variance (both norms as the truth) of the matched allocation from accepted norms
    and from both, over uniform's; and the accepted-only model's ratio for the former."""
    p = measured.accept_rate
    accepted, rejected = both_norms(measured.accepted_norm, measured.rejected_norm)
    nbar = config.num_generations
    uniform = np.full(p.size, nbar)

    def allocation(grad_norms: np.ndarray) -> np.ndarray:
        return allocate_samples(config, PromptStats(grad_norms, p)).n_samples

    def true_ratio(n: np.ndarray) -> float:
        return grpo_variance(n, accepted, p, nbar, rejected) / grpo_variance(
            uniform, accepted, p, nbar, rejected
        )

    from_accepted = allocation(accepted)
    from_both = allocation(grpo_grad_norm(accepted, rejected, p))
    modelled = grpo_variance(from_accepted, accepted, p, nbar) / grpo_variance(
        uniform, accepted, p, nbar
    )
    return true_ratio(from_accepted), true_ratio(from_both), modelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()
    world, _ = open_world(None)
    overrides = [*world_overrides(world), "algorithm=grpo", "allocation=gvm-matched"]
    scratch = tempfile.TemporaryDirectory()
    config = load_config(
        bundled_config("convergence.yaml"), [*overrides, f"output_dir={scratch.name}"]
    )
    run = setup(config, progress=False)
    measured, ratios = [], []
    for iteration in range(1, args.batches + 1):
        batch = draw_prompts(run, iteration)
        groups = sample(run, batch, [args.samples] * batch.size, iteration, Stream.STAGE1)
        measured.append(measure_batch(run, groups))
        ratios.append(variance_ratios(config, measured[-1]))
    table = {f: np.concatenate([getattr(m, f) for m in measured]) for f in Measured.__annotations__}
    mixed = (table["accept_rate"] > 0) & (table["accept_rate"] < 1)
    print(f"{mixed.sum()} of {mixed.size} prompts mixed (0 < p < 1 of {args.samples} samples)")
    print("| p | prompts | G accepted | G rejected | ratio rej/acc (median) | length acc/rej |")
    print("|---|---|---|---|---|---|")
    for low, high in BINS:
        rows = mixed & (table["accept_rate"] > low) & (table["accept_rate"] <= high)
        acc, rej = table["accepted_norm"][rows], table["rejected_norm"][rows]
        print(
            f"| ({low}, {high}] | {rows.sum()} | {acc.mean():.1f} | {rej.mean():.1f} | "
            f"{np.median(rej / acc):.2f} | {table['accepted_length'][rows].mean():.1f} / "
            f"{table['rejected_length'][rows].mean():.1f} |"
        )
    print("\n| batch | matched from accepted G | matched from both (G=all) | accepted-only model |")
    print("|---|---|---|---|")
    for iteration, (from_accepted, from_both, modelled) in enumerate(ratios, start=1):
        print(f"| {iteration} | {from_accepted:.2f} | {from_both:.2f} | {modelled:.2f} |")


if __name__ == "__main__":
    main()
