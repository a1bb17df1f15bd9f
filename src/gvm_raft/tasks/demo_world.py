"""The embedded default world: task data, tokenizer, and a warm-started tiny base policy.

``prepare_demo_world`` builds a directory, deterministically from a seed, and reuses it when it
already holds a world built from the same config:

    world.json           the config it was built from (written last: marks a complete world)
    report.json          model size, split sizes, headroom table, acceptance-rate histogram
    data/{sft,train,test}.jsonl
    model/               save_pretrained model + tokenizer (AutoModelForCausalLM / AutoTokenizer)

The default world is built for reinforcement from the model's own samples to have room to work,
as it has for a pretrained LLM on math: the steps (one-digit additions and subtractions on
numbers up to 19) come from a few hundred facts that the warm start sees thousands of times, so
the policy knows them (greedy accuracy near 1), but its demonstrations slip at a step with
probability 0.2 and carry the wrong value on, so at temperature 1 it slips too. pass@1 is low
and falls with the chain length (2 to 8 steps: acceptance rates spread over (0, 1) and differ by
level) while pass@k reaches nearly 1: RL sharpens pass@1 towards it, and since the slips are one
habit shared by every problem, the gain carries over to held-out prompts.

The world is deterministic on one machine, not across processors (the warm start's floating
point differs), so the package ships the default world built once (``shipped_world()``: the
files of SHIPPED_FILES, without the 6.8 MB of warm-start demonstrations, which the seed
regenerates on any machine): ``gvm-raft demo`` and the benchmarks start from the same weights
everywhere, and ``prepare_demo_world`` still builds one from scratch.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from gvm_raft.evaluate import pass_at_k
from gvm_raft.fileio import atomic_write_text, building_dir, write_jsonl
from gvm_raft.rewards import BUILT_IN, RewardFn
from gvm_raft.rollout.base import SamplingParams
from gvm_raft.rollout.hf import HFRollout
from gvm_raft.tasks.arithmetic import (
    DEFAULT_LEVELS,
    FAMILY_LEVELS,
    Level,
    format_prompt,
    generate_splits,
    in_symbols,
    with_step_errors,
)
from gvm_raft.tasks.tiny_model import TinyModelConfig, build_tiny_model_for
from gvm_raft.tasks.tokenizer import build_char_tokenizer
from gvm_raft.tasks.warm_start import encode_demonstrations, supervised_fine_tune

HISTOGRAM_EDGES = (0.0, 1e-9, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0 - 1e-9, 1.0)


@dataclass(frozen=True)
class DemoWorldConfig:
    """Everything that determines the world; the same config gives the same directory."""

    seed: int = 0
    sft_size: int = 50_000  # demonstrations for the warm start
    train_size: int = 1024  # prompts for RL: no prompt repeats within 16 iterations of 64
    test_size: int = 512  # held-out prompts
    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    sft_steps: int = 1000
    sft_batch_size: int = 64
    sft_learning_rate: float = 5e-3
    levels: tuple[Level, ...] = DEFAULT_LEVELS
    step_error_rate: float = 0.2  # per-step slip probability of the demonstrations
    reward: str = "arithmetic"  # the built-in reward that verifies the answers
    probe_samples: int = 8  # samples per train prompt to measure acceptance rates (temperature 1)
    headroom_samples: int = 32  # samples per test prompt for pass@1 and pass@k (temperature 1)
    max_new_tokens: int = 96


# The second world: four families of chains that share no digit or operator token, each with
# its own misconception at its own rate (tasks/arithmetic.py FAMILY_LEVELS), answers in the
# family's own digits.
FAMILIES_WORLD = DemoWorldConfig(levels=FAMILY_LEVELS, reward="exact", sft_steps=1500)
WORLDS = {"chains": DemoWorldConfig(), "families": FAMILIES_WORLD}


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
        return _cached_report(out)
    with building_dir(out) as staging:
        report = _build(staging, config, progress)
    return report | {"cached": False}


def _build(out: Path, config: DemoWorldConfig, progress: bool) -> dict:
    start = time.perf_counter()
    splits = generate_splits(
        {"test": config.test_size, "train": config.train_size, "sft": config.sft_size},
        seed=config.seed,
        levels=config.levels,
    )
    slips = random.Random(f"{config.seed}/step-errors")

    def demonstration(row: dict) -> dict:
        """The row's solution with its level's errors, at its level's rate (else the world's)."""
        level = _level(config, row)
        rate = level.step_error_rate or config.step_error_rate
        return with_step_errors(row, rate, slips, level.step_error)

    splits["sft"] = [demonstration(r) for r in splits["sft"]]
    splits = {
        name: [in_symbols(r, _level(config, r)) for r in rows] for name, rows in splits.items()
    }
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
    reward = BUILT_IN[config.reward]
    train_rates = (
        _correct_counts(
            rollout, splits["train"], config.probe_samples, sampled, config.seed, reward
        )
        / config.probe_samples
    )
    test_correct = _correct_counts(
        rollout, splits["test"], config.headroom_samples, sampled, config.seed, reward
    )
    test_greedy = _correct_counts(rollout, splits["test"], 1, greedy, config.seed, reward)
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
        "headroom_samples": config.headroom_samples,
        "test_headroom": headroom(
            [row["difficulty"] for row in splits["test"]],
            test_correct,
            test_greedy,
            config.headroom_samples,
        ),
        **(
            {
                "test_headroom_by_family": headroom(
                    [row["family"] for row in splits["test"]],
                    test_correct,
                    test_greedy,
                    config.headroom_samples,
                )
            }
            if any(level.family for level in config.levels)
            else {}
        ),
        "sft_seconds": round(sft_seconds, 1),
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "world.json", json.dumps(_as_json(config), indent=2) + "\n")
    return report


# The files of a world that the package ships: all that a run reads, and the build's record.
SHIPPED_FILES = (
    "world.json",
    "report.json",
    "data/train.jsonl",
    "data/test.jsonl",
    "model/config.json",
    "model/generation_config.json",
    "model/model.safetensors",
    "model/tokenizer.json",
    "model/tokenizer_config.json",
)


def shipped_world() -> Path:
    """The default world (DemoWorldConfig()) as the package ships it: built once by
    ``make ship-world`` and read in place."""
    return Path(str(resources.files("gvm_raft.tasks") / "world"))


def open_world(
    world_dir: str | Path | None, config: DemoWorldConfig | None = None, progress: bool = True
) -> tuple[Path, dict]:
    """A world's directory and report: the shipped world for None; else the world of
    ``config`` built (or reused) in ``world_dir``, or, without a config, the complete world
    already there (whatever it was built from) or the default one built there."""
    if world_dir is None:
        return shipped_world(), _cached_report(shipped_world())
    if config is not None or _built_from(Path(world_dir)) is None:
        return Path(world_dir), prepare_demo_world(world_dir, config, progress=progress)
    return Path(world_dir), _cached_report(Path(world_dir))


def ship_world(world_dir: str | Path, destination: str | Path | None = None) -> Path:
    """Copy a built default world's SHIPPED_FILES into the package (``shipped_world()``);
    refuses a world built from any other config."""
    world = Path(world_dir)
    if _built_from(world) != _as_json(DemoWorldConfig()):
        raise ValueError(f"{world} is not a complete world of the default DemoWorldConfig()")
    target = Path(destination) if destination is not None else shipped_world()
    for name in SHIPPED_FILES:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world / name, target / name)
    return target


def world_overrides(out_dir: str | Path, config: DemoWorldConfig | None = None) -> list[str]:
    """The config overrides that point a run at a world: its model, train/test files and
    reward (the built world's, else ``config``'s: a world not built here, whose archived runs
    are only read)."""
    world = Path(out_dir)
    built = _built_from(world)
    default = (config or DemoWorldConfig()).reward
    reward = built.get("reward", DemoWorldConfig.reward) if built else default
    return [
        f"model_name_or_path={world / 'model'}",
        f"train_file={world / 'data' / 'train.jsonl'}",
        f"test_file={world / 'data' / 'test.jsonl'}",
        f"reward={reward}",
    ]


def _correct_counts(
    rollout: HFRollout,
    rows: list[dict],
    k: int,
    params: SamplingParams,
    seed: int,
    reward: RewardFn,
) -> np.ndarray:
    """Correct answers among k samples, per row."""
    prompts = [format_prompt(r["problem"]) for r in rows]
    samples = rollout.generate(prompts, [k] * len(rows), params, seed)
    return np.array(
        [
            sum(reward([prompt] * k, [s.text for s in group], [row["answer"]] * k))
            for group, row, prompt in zip(samples, rows, prompts, strict=True)
        ]
    )


def _level(config: DemoWorldConfig, row: dict) -> Level:
    return config.levels[row["difficulty"] - 1]


def headroom(
    difficulty: Sequence[int | str], correct: np.ndarray, greedy: np.ndarray, samples: int
) -> dict[str, dict]:
    """Per difficulty level (or family) and over all prompts: prompt count, pass@k for
    k = 1, 2, 4, ... up to ``samples`` (unbiased, from ``correct`` of ``samples`` per prompt;
    pass@1 is the mean accuracy at temperature 1) and greedy accuracy. Reinforcement from the
    model's own samples can only raise pass@1 towards what pass@k already finds."""
    levels = np.array(difficulty)
    ks = [2**j for j in range(samples.bit_length()) if 2**j <= samples]
    groups = {str(level): levels == level for level in sorted(set(difficulty))}
    groups["all"] = np.ones(len(levels), dtype=bool)
    return {
        name: {"prompts": int(members.sum())}
        | {
            f"pass@{k}": round(
                float(np.mean([pass_at_k(samples, int(c), k) for c in correct[members]])), 4
            )
            for k in ks
        }
        | {"greedy": round(float(greedy[members].mean()), 4)}
        for name, members in groups.items()
    }


def _as_json(config: DemoWorldConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _cached_report(out: Path) -> dict:
    """The report of the complete world already in ``out``."""
    return json.loads((out / "report.json").read_text()) | {"cached": True}


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
        f"  headroom on the test prompts ({report['headroom_samples']} samples each at "
        "temperature 1; RL from own samples can raise pass@1 towards pass@k):",
    ]
    for name, table in [
        ("level", report["test_headroom"]),
        ("family", report.get("test_headroom_by_family", {})),
    ]:
        if not table:
            continue
        keys = [key for key in table["all"] if key != "prompts"]
        lines.append(f"    {name:>6} {'prompts':>7} " + " ".join(f"{key:>7}" for key in keys))
        for level, row in table.items():
            lines.append(
                f"    {level:>6} {row['prompts']:>7} "
                + " ".join(f"{row[key]:>7.3f}" for key in keys)
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
