"""The Python API, in TRL's shape: ``GVMTrainer(model=..., reward_funcs=..., args=GVMConfig(...),
train_dataset=...).train()``.

A thin adapter over ``trainer.train``, the function the CLI runs on a YAML config: objects given
here (a model, a tokenizer, datasets, reward callables) take the place of the config's paths
and names; everything else is the config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gvm_raft.config import GVMConfig
from gvm_raft.data import PromptRow, rows_of
from gvm_raft.errors import ConfigError
from gvm_raft.models import load_tokenizer
from gvm_raft.rewards import RewardFn, RewardSpec, load_rewards
from gvm_raft.run import Inputs
from gvm_raft.trainer import train


class GVMTrainer:
    """Train a causal LM with RAFT / RAFT++ / GRPO and per-prompt sample allocation.

    model: a Hugging Face model directory (or hub name), or a ``PreTrainedModel``.
    reward_funcs: None (``args.reward``), "math", "arithmetic", "module:function", a TRL-style
        callable ``f(prompts, completions, **columns) -> list[float | None]``, or a list of
        these (combined with ``args.reward_weights``). A sample is accepted when its (weighted)
        reward reaches ``args.accept_threshold``.
    args: the run's settings (``GVMConfig``: the same keys as a YAML config).
    train_dataset, eval_dataset: a ``datasets.Dataset`` (or ``IterableDataset``, a list of row
        dicts, a pandas DataFrame, a dict of columns) with a prompt column
        (``args.prompt_column``: text, or chat messages as in TRL's conversational datasets)
        and, for the built-in rewards, an answer column (``args.answer_column``; "" = none).
        None reads ``args.train_file`` / ``args.test_file``.
    processing_class: the tokenizer (default: the model directory's).
    peft_config: a peft ``LoraConfig``: train that adapter only (else ``args.use_peft`` and the
        ``lora_*`` settings).
    """

    def __init__(
        self,
        model: str | Path | PreTrainedModel,
        reward_funcs: RewardSpec | None = None,
        args: GVMConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: PreTrainedTokenizerBase | None = None,
        peft_config: Any = None,
        progress: bool = True,
    ) -> None:
        args = args or GVMConfig()
        if peft_config is not None:
            args = dataclasses.replace(args, use_peft=True)
        if isinstance(model, (str, Path)):
            args = dataclasses.replace(args, model_name_or_path=str(model))
            model = None
        elif processing_class is None:
            source = args.model_name_or_path or getattr(model, "name_or_path", "")
            if not source:
                raise ConfigError(
                    "processing_class is required when model is a model object without a "
                    "directory: pass its tokenizer"
                )
            processing_class = load_tokenizer(source, "processing_class")
        if isinstance(reward_funcs, str):
            args = dataclasses.replace(args, reward=reward_funcs)
        self.args = args
        self.model = model
        self.processing_class = processing_class
        self.reward_funcs = reward_funcs
        self.train_rows = self._rows(train_dataset, "train_dataset")
        self.eval_rows = self._rows(eval_dataset, "eval_dataset")
        self.peft_config = peft_config
        self.progress = progress

    def train(self) -> Path:
        """Run (or, with ``args.resume``, continue) the training; returns the run directory."""
        reward_fn = None
        if self.reward_funcs is not None and not isinstance(self.reward_funcs, str):
            reward_fn = self._reward_fn()
        inputs = Inputs(
            model=self.model,
            tokenizer=self.processing_class,
            train_rows=self.train_rows,
            test_rows=self.eval_rows,
            reward_fn=reward_fn,
            peft_config=self.peft_config,
        )
        return train(self.args, self.progress, inputs)

    def _reward_fn(self) -> RewardFn:
        return load_rewards(self.reward_funcs, self.args.reward_weights, self.args.reward_timeout)

    def _rows(self, dataset: Any, name: str) -> list[PromptRow] | None:
        if dataset is None:
            return None
        return rows_of(dataset, self.args.prompt_column, self.args.answer_column, name)
