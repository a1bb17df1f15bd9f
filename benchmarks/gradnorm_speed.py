"""Per-sample gradient norms: batched hooks against the per-sample loop and the plain floor.

The floor is one batched forward + backward of the summed log-likelihood over the same samples
(what any training step pays); the loop is the reference implementation's one backward per
sample. Run: .venv/bin/python benchmarks/gradnorm_speed.py [--samples 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from gvm_raft.gradnorm import PARAMETER_GROUPS, group_parameters, per_sample_grad_norms
from gvm_raft.logprobs import collate, token_log_probs
from gvm_raft.tasks.tiny_model import TinyModelConfig, build_tiny_model

SIZES = {
    "1M (d=128, 4 layers)": TinyModelConfig(hidden_size=128, num_layers=4, intermediate_size=512),
    "4M (d=256, 4 layers)": TinyModelConfig(hidden_size=256, num_layers=4, intermediate_size=1024),
}


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--response-tokens", type=int, default=48)
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    length = args.prompt_tokens + args.response_tokens
    rows = [
        (torch.randint(4, 100, (length,), generator=gen).tolist(), args.prompt_tokens)
        for _ in range(args.samples)
    ]
    batch = collate(rows, pad_id=0)
    print(
        f"{args.samples} samples of {length} tokens, micro-batch {args.micro_batch}, "
        f"{torch.get_num_threads()} threads, best of {args.repeats}"
    )
    print(
        f"{'model':<22} {'group':<10} {'floor s':>8} {'batched s':>10} {'loop s':>8} "
        f"{'batched/floor':>14} {'loop/batched':>13}"
    )
    for label, config in SIZES.items():
        measure(label, build_tiny_model(100, config, seed=0), batch, args)


def measure(label: str, model, batch: dict, args: argparse.Namespace) -> None:
    ids, att, mask = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]

    def floor() -> None:
        for i in range(0, args.samples, args.micro_batch):
            sl = slice(i, i + args.micro_batch)
            (token_log_probs(model, ids[sl], att[sl]) * mask[sl]).sum().backward()
        model.zero_grad(set_to_none=True)

    floor_s = best_time(floor, args.repeats)
    for group in PARAMETER_GROUPS:
        params = group_parameters(model, group)

        def batched(group: str = group) -> None:
            per_sample_grad_norms(model, ids, att, mask, group, args.micro_batch)

        def loop(params: list = params) -> None:
            for s in range(args.samples):
                loss = (token_log_probs(model, ids[s : s + 1], att[s : s + 1]) * mask[s]).sum()
                torch.autograd.grad(loss, params)

        batched_s = best_time(batched, args.repeats)
        loop_s = best_time(loop, 1)
        print(
            f"{label:<22} {group:<10} {floor_s:>8.3f} {batched_s:>10.3f} {loop_s:>8.3f} "
            f"{batched_s / floor_s:>14.2f} {loop_s / batched_s:>13.2f}"
        )


if __name__ == "__main__":
    main()
