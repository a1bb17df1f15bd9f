"""The Python API: the README's example runs as written, rewards combine as TRL's reward_weights,
conversational datasets reach TRL-style rewards as TRL passes them, model objects train."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from runlogs import metric_rows

from gvm_raft import GVMConfig, GVMTrainer
from gvm_raft.errors import ConfigError
from gvm_raft.models import load_causal_lm, load_tokenizer
from gvm_raft.rewards import load_rewards
from gvm_raft.tasks import demo_world

ROOT = Path(__file__).parent.parent


def test_the_readme_example_is_the_example_script_and_runs_as_written(
    tiny_world, tmp_path, monkeypatch
):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = (ROOT / "examples/python_api.py").read_text()
    assert block == script
    monkeypatch.setattr(demo_world, "shipped_world", lambda: tiny_world)
    monkeypatch.chdir(tmp_path)
    exec(compile(script, "examples/python_api.py", "exec"), {"__name__": "__main__"})
    metrics = metric_rows(tmp_path / "runs/python-api")
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    assert metrics[1]["samples/stage1"] + metrics[1]["samples/stage2"] == 16 * 8
    saved = (tmp_path / "runs/python-api/config.yaml").read_text()
    assert f"model_name_or_path: {tiny_world / 'model'}" in saved


def test_reward_functions_combine_with_weights_as_trl_does():
    def length(prompts, completions, **kwargs):
        return [float(len(c)) for c in completions]

    def has_x(completions, **kwargs):  # TRL functions may omit prompts
        return [1.0 if "x" in c else None for c in completions]

    combined = load_rewards([length, has_x], [0.5, 2.0])
    # 0.5 * 2 + 2 * 1 = 3; 0.5 * 3 + None (no opinion: 0) = 1.5
    assert combined(prompts=["p", "q"], completions=["xy", "abc"]) == [3.0, 1.5]
    assert load_rewards([length]) is length
    with pytest.raises(ConfigError, match="reward_weights has 1 weights for 2 reward functions"):
        load_rewards([length, has_x], [1.0])


def test_a_conversational_dataset_reaches_a_trl_reward_as_trl_passes_it(chat_model_dir, tmp_path):
    seen = {}

    def shaped(prompts, completions, answer, **kwargs):
        seen.update(prompt=prompts[0], completion=completions[0], answer=answer[0])
        return [float(len(c[0]["content"]) % 2) for c in completions]

    messages = [[{"role": "user", "content": f"What is {i} + {i}?"}] for i in range(4)]
    dataset = [{"prompt": m, "answer": str(2 * i)} for i, m in enumerate(messages)]
    args = GVMConfig(
        output_dir=str(tmp_path / "chat"),
        prompt_column="prompt",
        iterations=1,
        prompts_per_iteration=4,
        num_generations=4,
        stage1_samples=2,
        max_completion_length=8,
        mini_batch_size=8,
        learning_rate=1e-3,
    )
    trainer = GVMTrainer(str(chat_model_dir), shaped, args, dataset, dataset[:2], progress=False)
    metrics = metric_rows(trainer.train())
    assert metrics[1]["train/optimizer_steps"] == 2
    assert seen["prompt"] in messages and seen["answer"] in {"0", "2", "4", "6"}
    assert seen["completion"][0]["role"] == "assistant"
    assert isinstance(seen["completion"][0]["content"], str)


def test_a_model_object_trains_and_resumes_like_its_directory(tiny_world, tiny_config, tiny_model):
    rows = [json.loads(line) for line in (tiny_world / "data/train.jsonl").open()]
    tokenizer = load_tokenizer(tiny_world / "model")
    by_path = GVMTrainer(str(tiny_world / "model"), args=tiny_config("path"), train_dataset=rows)
    expected = metric_rows(by_path.train())

    def from_object(**overrides) -> GVMTrainer:
        args = tiny_config("object", model_name_or_path="", **overrides)
        model = load_causal_lm(tiny_world / "model")
        return GVMTrainer(model, args=args, train_dataset=rows, processing_class=tokenizer)

    from_object(iterations=1).train()
    assert metric_rows(from_object(resume=True).train()) == expected
    with pytest.raises(ConfigError, match="processing_class is required"):
        GVMTrainer(tiny_model, args=tiny_config("x", model_name_or_path=""))  # no directory
