"""Supervised warm start on chain-of-thought demonstrations (the base policy of the demo)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gvm_raft.logprobs import collate, token_log_probs


def encode_demonstrations(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], completions: Sequence[str]
) -> list[tuple[list[int], int]]:
    """(bos + prompt + completion + eos token ids, prompt length in tokens incl. bos) per row."""
    rows = []
    for prompt, completion in zip(prompts, completions, strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids + completion_ids + [tokenizer.eos_token_id], len(prompt_ids)))
    return rows


def supervised_fine_tune(
    model: PreTrainedModel,
    rows: Sequence[tuple[list[int], int]],
    pad_id: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    warmup_steps: int = 50,
    progress: bool = True,
) -> list[float]:
    """Token-mean NLL of the completions with AdamW, linear warm-up then cosine decay to 10%.

    Returns the loss of every step.
    """
    rng = random.Random(seed)
    order: list[int] = []
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress_ = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model.train()
    losses = []
    for _ in tqdm(range(steps), desc="warm start", disable=None if progress else True, leave=False):
        if len(order) < batch_size:
            fresh = list(range(len(rows)))
            rng.shuffle(fresh)
            order.extend(fresh)
        batch = collate([rows[i] for i in order[:batch_size]], pad_id)
        del order[:batch_size]
        log_probs = token_log_probs(model, batch["input_ids"], batch["attention_mask"])
        mask = batch["completion_mask"]
        loss = -(log_probs * mask).sum() / mask.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    model.eval()
    return losses
