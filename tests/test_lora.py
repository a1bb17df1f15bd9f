"""LoRA through peft: only the adapter trains and is checkpointed, a run resumes to the same
metrics, its adapter evaluates, G_i on the adapter equals the per-sample loop, the KL model
is the base model, and merged weights are W + B A alpha / r."""

from __future__ import annotations

import json

import pytest
import torch
from runlogs import metric_rows
from safetensors.torch import load_file
from test_gradnorm import loop_norms, make_batch, make_model

from gvm_raft.cli import main
from gvm_raft.gradnorm import group_parameters, per_sample_grad_norms
from gvm_raft.logprobs import token_log_probs
from gvm_raft.models import load_causal_lm, merged_weights, with_adapter
from gvm_raft.mstep import Learner, reference_log_probs
from gvm_raft.trainer import train

peft = pytest.importorskip("peft")
LORA = dict(use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=("q_proj", "v_proj"))


def test_a_lora_run_trains_the_adapter_only_resumes_and_evaluates(tiny_config, tiny_world):
    full_dir = train(tiny_config("full", grad_norm_group="lora", **LORA), progress=False)
    saved = full_dir / "checkpoints/iteration-000002/model"
    assert (saved / "adapter_config.json").exists() and not (saved / "model.safetensors").exists()
    adapter = load_file(saved / "adapter_model.safetensors")
    assert adapter and all("lora_" in name for name in adapter)
    assert any("lora_B" in name and tensor.abs().sum() > 0 for name, tensor in adapter.items())
    metrics = metric_rows(full_dir)
    assert metrics[1]["train/optimizer_steps"] == 2 and metrics[1]["train/kl"] >= 0
    assert metrics[2]["allocation/variance_ratio"] <= 1.0  # G_i measured on the adapter

    train(tiny_config("cut", iterations=1, grad_norm_group="lora", **LORA), progress=False)
    resumed = train(tiny_config("cut", resume=True, grad_norm_group="lora", **LORA), progress=False)
    assert metric_rows(resumed) == metrics

    merged = load_causal_lm(saved)  # the adapter on its base, merged
    base = load_causal_lm(tiny_world / "model")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], base.state_dict()[name])
    out = full_dir / "eval.json"
    options = ["--reward", "parity_reward:even_code_point_sum", "--prompt-template", "plain"]
    options += ["--max-completion-length", "8", "--eval-samples", "2", "--eval-max-prompts", "3"]
    data = str(tiny_world / "data/test.jsonl")
    assert main(["eval", str(saved), data, *options, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["test"]["prompts"] == 3


def lora_model(dropout: float = 0.0):
    model = with_adapter(
        make_model(tied=False).float(),
        peft.LoraConfig(
            r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q_proj", "v_proj"]
        ),
    )
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # zero at initialisation: give the adapter an effect
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return model.eval()


@pytest.mark.parametrize("group", ["lora", "embedding"])
def test_gradient_norms_of_a_lora_model_equal_the_per_sample_loop(group):
    model = lora_model()
    input_ids, attention_mask, mask = make_batch()
    batched = per_sample_grad_norms(model, input_ids, attention_mask, mask, group, 2)
    params = group_parameters(model, group)
    assert all(p.requires_grad == (group == "lora") for p in params)  # frozen stays frozen
    for p in params:
        p.requires_grad_(True)  # the loop differentiates them
    expected = loop_norms(model, input_ids, attention_mask, mask, group)
    torch.testing.assert_close(batched, expected, rtol=1e-4, atol=1e-6)


def test_the_kl_reference_of_a_lora_policy_is_its_base_model():
    model = lora_model()
    base = make_model(tied=False).float().eval()
    input_ids, attention_mask, _ = make_batch()
    accelerator = type("Single", (), {"unwrap_model": staticmethod(lambda m: m)})()
    learner = Learner(accelerator, model, None, None, None, 0)
    reference = reference_log_probs(learner, input_ids, attention_mask, 1.0)
    torch.testing.assert_close(reference, token_log_probs(base, input_ids, attention_mask))
    assert not torch.allclose(reference, token_log_probs(model, input_ids, attention_mask))


def test_merged_weights_are_the_base_plus_the_scaled_low_rank_update():
    model = lora_model()
    base = make_model(tied=False).float().state_dict()
    merged = merged_weights(model)
    assert merged.keys() == base.keys()
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    update = layer.lora_B["default"].weight @ layer.lora_A["default"].weight * (8 / 4)
    name = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(merged[name], base[name] + update)
    torch.testing.assert_close(
        merged["model.layers.0.mlp.up_proj.weight"], base["model.layers.0.mlp.up_proj.weight"]
    )
    unmerged = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer.weight
    torch.testing.assert_close(unmerged, base[name])  # merging left the model as it was
