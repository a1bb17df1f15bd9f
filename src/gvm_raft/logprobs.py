"""Per-token log-probabilities of sequences under a causal LM (teacher forcing)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from the first real token, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_log_probs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """log softmax(logits / temperature) of each next token: shape (B, T-1), entry t scores
    ``input_ids[:, t + 1]`` given the tokens up to t."""
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
    ).logits[:, :-1]
    return log_probs_of(logits, input_ids[:, 1:], temperature)


def log_probs_of(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log softmax(logits / temperature)[tokens], in float32 without materialising the softmax."""
    scaled = logits.float() / temperature
    return scaled.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - scaled.logsumexp(-1)


def left_pad(sequences: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask (B, T) of token lists padded on the left to the longest."""
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


def collate(rows: Sequence[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded batch of (prompt + completion ids, prompt length) rows: input_ids and
    attention_mask (B, T), and completion_mask (B, T - 1) whose entry t marks that token t + 1
    belongs to the completion, aligned with token_log_probs."""
    input_ids, attention_mask = left_pad([ids for ids, _ in rows], pad_id)
    width = input_ids.shape[1]
    completion_mask = torch.zeros((len(rows), width - 1))
    for row, (ids, prompt_len) in enumerate(rows):
        completion_mask[row, width - len(ids) + prompt_len - 1 :] = 1.0
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "completion_mask": completion_mask,
    }
