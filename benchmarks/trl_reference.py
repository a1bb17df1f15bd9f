"""TRL's GRPOTrainer against gvm-raft's uniform GRPO on the same model, prompts and budget.

An independent reference for "does RL from the model's own samples learn here, and does
gvm-raft learn at least as fast per generated sample?". Both start from the embedded world's
warm-started model and train on its train prompts; one gvm-raft iteration (m prompts x n
samples, mini-batches of b samples, one optimizer step each) is matched in TRL by
generation_batch_size = m n, per_device_train_batch_size = b, steps_per_generation = m n / b,
num_iterations = 1 (each generation used once), the same learning rate, warm-up, clip range,
KL coefficient, temperature and token-mean loss ("dapo": normalised by the tokens of the
optimizer step's batch, gvm-raft's token_mean). After every m n generated samples both are
evaluated with gvm-raft's evaluation (the same test prompts, samples and seed).

TRL is a benchmark dependency, not a product one: `.venv/bin/pip install trl` first.
Run: .venv/bin/python benchmarks/trl_reference.py [--iterations 8] [--out runs/trl-reference]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gvm_raft.checkpoint import METRICS_FILE
from gvm_raft.config import load_config
from gvm_raft.data import load_prompts
from gvm_raft.demo import bundled_config
from gvm_raft.evaluate import evaluate
from gvm_raft.fileio import read_jsonl
from gvm_raft.models import load_causal_lm, load_tokenizer
from gvm_raft.rewards import arithmetic_reward_fn
from gvm_raft.rollout.base import SamplingParams
from gvm_raft.rollout.hf import HFRollout
from gvm_raft.seeds import Stream, stream_seed
from gvm_raft.tasks.arithmetic import format_prompt
from gvm_raft.tasks.demo_world import format_world_report, open_world, world_overrides


def run_trl(config, world: Path, out: Path) -> list[dict]:
    """TRL GRPO matched to ``config``'s budget and step sizes; test metrics per iteration."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(world / "model")
    model = load_causal_lm(world / "model")
    train_rows = [json.loads(line) for line in (world / "data" / "train.jsonl").open()]
    dataset = Dataset.from_list(
        [{"prompt": format_prompt(r["problem"]), "answer": r["answer"]} for r in train_rows]
    )
    test_rows = load_prompts(config.test_file, config.prompt_column, config.answer_column)
    per_iteration = config.prompts_per_iteration * config.num_generations
    steps_per_iteration = per_iteration // config.mini_batch_size
    rows: list[dict] = []

    def evaluate_now(iteration: int, seconds: float) -> None:
        backend = HFRollout(model, tokenizer, batch_size=config.rollout_batch_size, progress=False)
        metrics = evaluate(
            backend,
            test_rows,
            [format_prompt(r.problem) for r in test_rows],
            arithmetic_reward_fn,
            config.eval_samples,
            SamplingParams(config.eval_temperature, 1.0, config.max_completion_length),
            stream_seed(config.seed, Stream.EVALUATION, 0),  # as gvm-raft evaluates
            config.eval_greedy,
        )
        model.train()
        row = {"iteration": iteration, "samples/cumulative": iteration * per_iteration}
        row |= {f"test/{k}": v for k, v in metrics.items()} | {"time/train": seconds}
        rows.append(row)
        print(json.dumps(row), flush=True)

    class EveryIteration(TrainerCallback):
        def __init__(self) -> None:
            self.clock = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % steps_per_iteration == 0:
                seconds = time.perf_counter() - self.clock
                evaluate_now(state.global_step // steps_per_iteration, seconds)
                self.clock = time.perf_counter()

    args = GRPOConfig(
        output_dir=str(out / "trl"),
        seed=config.seed,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        max_steps=config.iterations * steps_per_iteration,
        per_device_train_batch_size=config.mini_batch_size,
        gradient_accumulation_steps=1,
        steps_per_generation=steps_per_iteration,
        num_generations=config.num_generations,
        num_iterations=1,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high,
        loss_type="dapo",
        scale_rewards="group",
        use_cpu=True,
        report_to="none",
        logging_steps=steps_per_iteration,
        save_strategy="no",
        disable_dropout=True,
    )
    model.eval()
    evaluate_now(0, 0.0)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=arithmetic_reward_fn,  # TRL's signature already
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[EveryIteration()],
    )
    trainer.train()
    return rows


def run_gvm_raft(config_path: Path, overrides: list[str], run_dir: Path) -> list[dict]:
    """``gvm-raft train`` in its own process (TRL configures accelerate's process state)."""
    command = [sys.executable, "-m", "gvm_raft.cli", "train", str(config_path), *overrides]
    subprocess.run([*command, f"output_dir={run_dir}", "resume=true"], check=True)
    return read_jsonl(run_dir / METRICS_FILE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--world",
        type=Path,
        default=None,
        help="a world directory, built when missing (default: the world shipped with the package)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/trl-reference"))
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args()
    args.world, report = open_world(args.world)
    print(format_world_report(report, args.world), flush=True)
    base = bundled_config("demo.yaml")
    overrides = [
        *world_overrides(args.world),
        "algorithm=grpo",
        "allocation=uniform",
        *args.overrides,
    ]
    config = load_config(base, overrides)
    if config.prompts_per_iteration * config.num_generations % config.mini_batch_size:
        parser.error("mini_batch_size must divide prompts_per_iteration x num_generations")
    results: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {}
    tic = time.perf_counter()
    results["gvm-raft GRPO, uniform"] = run_gvm_raft(base, overrides, args.out / "gvm-raft")
    seconds["gvm-raft GRPO, uniform"] = time.perf_counter() - tic
    tic = time.perf_counter()
    results["TRL GRPOTrainer"] = run_trl(config, args.world, args.out)
    seconds["TRL GRPOTrainer"] = time.perf_counter() - tic
    print(
        f"\nsame model, prompts and budget ({config.prompts_per_iteration} prompts x "
        f"{config.num_generations} samples per iteration, {config.mini_batch_size} samples per "
        f"optimizer step, lr {config.learning_rate:g}); test accuracy at temperature "
        f"{config.eval_temperature:g} ({config.eval_samples} samples per prompt):\n"
    )
    iterations = range(config.iterations + 1)
    print("| trainer | " + " | ".join(str(i) for i in iterations) + " | wall time |")
    print("|---|" + "---|" * (len(iterations) + 1))
    for name, rows in results.items():
        by_iteration = {r["iteration"]: r.get("test/accuracy") for r in rows}
        cells = [
            "-" if by_iteration.get(i) is None else f"{by_iteration[i]:.3f}" for i in iterations
        ]
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds[name]:.0f} s |")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
