"""Rollouts with ``transformers`` ``generate`` (CPU or GPU).

Requests (prompt, copy) are flattened across prompts, sorted by prompt length to limit padding,
and generated in left-padded batches with the KV cache; never one call per prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from gvm_raft.logprobs import left_pad, log_probs_of
from gvm_raft.rollout.base import Sample, SamplingParams, check_n_samples


class HFRollout:
    """Sampling backend over a Hugging Face causal LM.

    batch_size: sequences per ``generate`` call.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        batch_size: int = 64,
        progress: bool = True,
    ) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token")
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no eos token: set tokenizer.eos_token")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        n_samples: Sequence[int],
        params: SamplingParams,
        seed: int,
    ) -> list[list[Sample]]:
        check_n_samples(prompts, n_samples)
        encoded = [self.tokenizer(p)["input_ids"] for p in prompts]
        requests = [i for i, count in enumerate(n_samples) for _ in range(int(count))]
        requests.sort(key=lambda i: len(encoded[i]))  # stable: copies stay together
        results: list[list[Sample]] = [[] for _ in prompts]
        was_training = self.model.training
        self.model.eval()
        device = self.model.device
        with (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
            tqdm(
                total=len(requests),
                desc="rollout",
                unit="sample",
                disable=None if self.progress else True,
                leave=False,
            ) as bar,
        ):
            torch.manual_seed(seed)
            for start in range(0, len(requests), self.batch_size):
                batch = requests[start : start + self.batch_size]
                for index, sample in zip(
                    batch, self._generate_batch(batch, encoded, params), strict=True
                ):
                    results[index].append(sample)
                bar.update(len(batch))
        self.model.train(was_training)
        return results

    def sync_weights(self, model: PreTrainedModel) -> None:
        """Sample from ``model`` from now on (the trainer's own module: nothing to copy)."""
        self.model = model

    def close(self) -> None:
        """Nothing to release: the model belongs to the trainer."""

    def _generate_batch(
        self, batch: list[int], encoded: list[list[int]], params: SamplingParams
    ) -> list[Sample]:
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        input_ids, attention_mask = left_pad([encoded[i] for i in batch], pad)
        width = input_ids.shape[1]
        greedy = params.temperature == 0
        config = GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else params.temperature,
            top_p=None if greedy else params.top_p,
            top_k=None if greedy else 0,
            max_new_tokens=params.max_new_tokens,
            pad_token_id=pad,
            eos_token_id=eos,
            return_dict_in_generate=True,
            output_logits=True,
        )
        out = self.model.generate(
            input_ids=input_ids.to(self.model.device),
            attention_mask=attention_mask.to(self.model.device),
            generation_config=config,
            synced_gpus=False,  # every process generates its own share on a whole model
        )
        new_tokens = out.sequences[:, width:]
        logits = torch.stack(out.logits, dim=1)
        log_probs = log_probs_of(logits, new_tokens, 1.0 if greedy else params.temperature)
        samples = []
        for row, i in enumerate(batch):
            tokens = new_tokens[row].tolist()
            stop = tokens.index(eos) + 1 if eos in tokens else None
            tokens = tokens[:stop] if stop else tokens
            samples.append(
                Sample(
                    prompt_in_call=i,
                    prompt_ids=encoded[i],
                    token_ids=tokens,
                    text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                    log_probs=log_probs[row, : len(tokens)].tolist(),
                    finish_reason="stop" if stop else "length",
                )
            )
        return samples
