"""Model and tokenizer loading: every failure names the setting and what to do."""

from __future__ import annotations

import pytest

from gvm_raft.models import ModelLoadError, load_causal_lm, load_tokenizer


def test_a_missing_local_path_is_named_without_hub_noise(tmp_path):
    with pytest.raises(ModelLoadError, match=r"model_name_or_path=.*missing: no such directory$"):
        load_causal_lm(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match=r"^model=\./missing: no such directory$"):
        load_tokenizer("./missing", setting="model")


def test_a_directory_without_a_model_says_what_belongs_in_it(tmp_path):
    (tmp_path / "train.jsonl").write_text("{}\n")
    for load in (load_causal_lm, load_tokenizer):
        with pytest.raises(ModelLoadError, match=r"holds no config\.json; .* save_pretrained"):
            load(tmp_path)


def test_a_broken_model_directory_names_what_failed(tiny_world, tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "vocab_size": 0}')
    with pytest.raises(ModelLoadError, match="cannot load a causal LM"):
        load_causal_lm(tmp_path)
    assert load_tokenizer(tiny_world / "model").pad_token_id is not None
