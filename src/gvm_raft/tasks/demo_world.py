"""The embedded default world: task data, tokenizer, and a warm-started tiny base policy.

``prepare_demo_world`` builds a directory, deterministically from a seed, and reuses it when it
already holds a world built from the same config:

    world.json           the config it was built from (written last: marks a complete world)
    report.json          model size, split sizes, base accuracy, acceptance-rate histogram
    data/{sft,train,test}.jsonl
    model/               save_pretrained model + tokenizer (AutoModelForCausalLM / AutoTokenizer)

The warm start leaves the policy partly competent, so per-prompt acceptance rates at
temperature 1.0 spread between 0 and 1: the regime where allocation matters.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gvm_raft.fileio import atomic_write_text, building_dir, write_jsonl
from gvm_raft.rewards.arithmetic import arithmetic_reward
from gvm_raft.rollout.base import SamplingParams
from gvm_raft.rollout.hf import HFRollout
from gvm_raft.tasks.arithmetic import format_prompt, generate_splits
from gvm_raft.tasks.tiny_model import TinyModelConfig, build_tiny_model_for
from gvm_raft.tasks.tokenizer import build_char_tokenizer
from gvm_raft.tasks.warm_start import encode_demonstrations, supervised_fine_tune

HISTOGRAM_EDGES = (0.0, 1e-9, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0 - 1e-9, 1.0)


@dataclass(frozen=True)
class DemoWorldConfig:
    """Everything that determines the world; the same config gives the same directory."""

    seed: int = 0
    sft_size: int = 50_000  # demonstrations for the warm start
    train_size: int = 512  # prompts for RL / rejection sampling
    test_size: int = 256  # held-out prompts
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    sft_steps: int = 1500
    sft_batch_size: int = 64
    sft_learning_rate: float = 5e-3
    probe_samples: int = 8  # samples per prompt to measure acceptance rates (temperature 1)
    max_new_tokens: int = 96


def prepare_demo_world(
    out_dir: str | Path,
    config: DemoWorldConfig | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Build (or reuse) the world in ``out_dir``; returns its report."""
    config = config or DemoWorldConfig()
    out = Path(out_dir)
    if not force and _built_from(out) == _as_json(config):
        report = json.loads((out / "report.json").read_text())
        return report | {"cached": True}
    with building_dir(out) as staging:
        report = _build(staging, config, progress)
    return report | {"cached": False}


def _build(out: Path, config: DemoWorldConfig, progress: bool) -> dict:
    start = time.perf_counter()
    splits = generate_splits(
        {"test": config.test_size, "train": config.train_size, "sft": config.sft_size},
        seed=config.seed,
    )
    for name, rows in splits.items():
        write_jsonl(out / "data" / f"{name}.jsonl", rows)
    tokenizer = build_char_tokenizer()
    model = build_tiny_model_for(tokenizer, config.model, seed=config.seed)
    demonstrations = encode_demonstrations(
        tokenizer,
        [format_prompt(row["problem"]) for row in splits["sft"]],
        [row["solution"] for row in splits["sft"]],
    )
    losses = supervised_fine_tune(
        model,
        demonstrations,
        tokenizer.pad_token_id,
        steps=config.sft_steps,
        batch_size=config.sft_batch_size,
        learning_rate=config.sft_learning_rate,
        seed=config.seed,
        progress=progress,
    )
    sft_seconds = time.perf_counter() - start
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")

    rollout = HFRollout(model, tokenizer, batch_size=256, progress=progress)
    sampled = SamplingParams(temperature=1.0, max_new_tokens=config.max_new_tokens)
    greedy = SamplingParams(temperature=0.0, max_new_tokens=config.max_new_tokens)
    train_rates = _accept_rates(
        rollout, splits["train"], config.probe_samples, sampled, config.seed
    )
    test_rates = _accept_rates(rollout, splits["test"], config.probe_samples, sampled, config.seed)
    test_greedy = _accept_rates(rollout, splits["test"], 1, greedy, config.seed)
    counts, _ = np.histogram(train_rates, bins=HISTOGRAM_EDGES)
    report = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "probe_samples": config.probe_samples,
        "split_sizes": {name: len(rows) for name, rows in splits.items()},
        "final_sft_loss": float(np.mean(losses[-50:])) if losses else None,
        "train_accept_rate_histogram": {
            "edges": [
                "0",
                "(0,0.1)",
                "[0.1,0.3)",
                "[0.3,0.5)",
                "[0.5,0.7)",
                "[0.7,0.9)",
                "[0.9,1)",
                "1",
            ],
            "counts": counts.tolist(),
        },
        "train_fraction_spread": float(np.mean((train_rates > 0.1) & (train_rates < 0.9))),
        "train_mean_accept_rate": float(train_rates.mean()),
        "test_accuracy_by_difficulty": _by_difficulty(splits["test"], test_rates, test_greedy),
        "test_accuracy_sampled": float(test_rates.mean()),
        "test_accuracy_greedy": float(test_greedy.mean()),
        "sft_seconds": round(sft_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "world.json", json.dumps(_as_json(config), indent=2) + "\n")
    return report


def _accept_rates(
    rollout: HFRollout, rows: list[dict], k: int, params: SamplingParams, seed: int
) -> np.ndarray:
    samples = rollout.generate(
        [format_prompt(r["problem"]) for r in rows], [k] * len(rows), params, seed
    )
    return np.array(
        [
            np.mean([arithmetic_reward(s.text, row["answer"]) for s in group])
            for group, row in zip(samples, rows, strict=True)
        ]
    )


def _by_difficulty(rows: list[dict], sampled: np.ndarray, greedy: np.ndarray) -> dict[str, dict]:
    difficulty = np.array([row["difficulty"] for row in rows])
    return {
        str(level): {
            "prompts": int((difficulty == level).sum()),
            "sampled": round(float(sampled[difficulty == level].mean()), 4),
            "greedy": round(float(greedy[difficulty == level].mean()), 4),
        }
        for level in sorted(set(difficulty.tolist()))
    }


def _as_json(config: DemoWorldConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _built_from(out: Path) -> dict | None:
    try:
        return json.loads((out / "world.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def format_world_report(report: dict, out_dir: str | Path) -> str:
    """Human-readable summary of a world's report."""
    hist = report["train_accept_rate_histogram"]
    lines = [
        f"demo world in {out_dir}" + (" (reused)" if report.get("cached") else ""),
        f"  model: {report['parameters']:,} parameters; splits: "
        + ", ".join(f"{name} {size}" for name, size in report["split_sizes"].items()),
        f"  test accuracy: {report['test_accuracy_sampled']:.3f} sampled (temperature 1), "
        f"{report['test_accuracy_greedy']:.3f} greedy",
        "  by difficulty (prompts: sampled / greedy):",
    ]
    for level, row in report["test_accuracy_by_difficulty"].items():
        lines.append(
            f"    {level}: ({row['prompts']:>3}) {row['sampled']:.3f} / {row['greedy']:.3f}"
        )
    lines.append(
        f"  acceptance rates of the train prompts ({report['probe_samples']} samples each, "
        "temperature 1):"
    )
    width = max(hist["counts"]) or 1
    for edge, count in zip(hist["edges"], hist["counts"], strict=True):
        lines.append(f"    {edge:>10} {count:>5} {'#' * round(40 * count / width)}")
    lines.append(f"  fraction strictly between 0.1 and 0.9: {report['train_fraction_spread']:.3f}")
    lines.append(f"  built in {report['total_seconds']} s (warm start {report['sft_seconds']} s)")
    return "\n".join(lines)
