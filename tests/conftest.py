"""Shared fixtures: a tiny randomly initialised model, its character tokenizer, a tiny demo
world (data + warm-started model on disk) built once per session, and the settings of a tiny
training run on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gvm_raft.config import GVMConfig
from gvm_raft.tasks.demo_world import DemoWorldConfig, prepare_demo_world
from gvm_raft.tasks.tiny_model import TinyModelConfig, build_tiny_model_for
from gvm_raft.tasks.tokenizer import build_char_tokenizer


@pytest.fixture(scope="session")
def char_tokenizer():
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(char_tokenizer):
    config = TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    model = build_tiny_model_for(char_tokenizer, config, seed=0)
    return model.eval()


TINY_WORLD = DemoWorldConfig(
    seed=2,
    sft_size=300,
    train_size=16,
    test_size=8,
    model=TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
    sft_steps=5,
    sft_batch_size=16,
    probe_samples=2,
    headroom_samples=4,
    max_new_tokens=24,
)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A demo world small enough for the unit tests: 16 train and 8 test prompts."""
    path = tmp_path_factory.mktemp("world") / "w"
    prepare_demo_world(path, TINY_WORLD, progress=False)
    return path


# A run of 2 iterations on the tiny world: 4 prompts x 4 samples (stage 1: 2, reused), short
# completions, 2 optimizer steps per iteration; the parity reward accepts about half.
TINY_RUN = dict(
    reward="parity_reward:even_code_point_sum",
    prompt_template="plain",
    iterations=2,
    prompts_per_iteration=4,
    num_generations=4,
    stage1_samples=2,
    max_completion_length=16,
    learning_rate=1e-3,
    mini_batch_size=8,
    micro_batch_size=4,
    eval_samples=2,
)


def tiny_run_settings(world: Path, output_dir: Path, **overrides) -> dict:
    """TINY_RUN on ``world`` writing to ``output_dir``, with overrides."""
    paths = dict(
        model_name_or_path=str(world / "model"),
        train_file=str(world / "data/train.jsonl"),
        test_file=str(world / "data/test.jsonl"),
        output_dir=str(output_dir),
    )
    return paths | TINY_RUN | overrides


@pytest.fixture
def tiny_config(tiny_world, tmp_path):
    """tiny_config(name, **overrides): the GVMConfig of a tiny run in tmp_path / name."""

    def make(name: str = "run", **overrides) -> GVMConfig:
        return GVMConfig(**tiny_run_settings(tiny_world, tmp_path / name, **overrides))

    return make


@pytest.fixture
def tiny_overrides(tiny_world, tmp_path):
    """tiny_overrides(**overrides): the tiny run as key=value overrides of a YAML config (no
    output_dir: the caller chooses where each run goes)."""

    def make(**overrides) -> list[str]:
        settings = tiny_run_settings(tiny_world, tmp_path / "run", **overrides)
        del settings["output_dir"]
        return [f"{key}={value}" for key, value in settings.items()]

    return make


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def chat_model_dir(tmp_path_factory):
    """A tiny randomly initialised chat model: byte-level BPE tokenizer with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["What is $\\frac{1}{2} + \\frac{1}{4}$? The answer is \\boxed{\\frac{3}{4}}."] * 4
    backend.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    model = build_tiny_model_for(
        tokenizer,
        TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
        seed=0,
    )
    path = tmp_path_factory.mktemp("chat") / "model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
