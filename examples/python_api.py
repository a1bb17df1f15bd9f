"""Train GVM-RAFT++ from Python on the embedded world, with a reward written as a function."""

from datasets import load_dataset

from gvm_raft import GVMConfig, GVMTrainer
from gvm_raft.tasks.demo_world import shipped_world

world = shipped_world()  # the embedded world's model and data, shipped with the package
data = load_dataset(
    "json",
    data_files={"train": f"{world}/data/train.jsonl", "test": f"{world}/data/test.jsonl"},
)


def boxed_answer_is_right(prompts, completions, answer, **kwargs):
    """TRL's reward signature: one float per completion (the dataset's columns as keywords)."""
    rewards = []
    for completion, reference in zip(completions, answer, strict=True):
        boxed = completion.rsplit("\\boxed{", 1)[-1].split("}", 1)[0]
        rewards.append(float(boxed.strip() == reference))
    return rewards


trainer = GVMTrainer(
    model=f"{world}/model",
    reward_funcs=boxed_answer_is_right,
    args=GVMConfig(
        output_dir="runs/python-api",
        algorithm="raft++",
        allocation="gvm",
        iterations=2,
        prompts_per_iteration=16,
        num_generations=8,
        stage1_samples=4,
        max_completion_length=96,
        learning_rate=1e-4,
        prompt_template="plain",
        eval_samples=2,
    ),
    train_dataset=data["train"],
    eval_dataset=data["test"],
)
run_dir = trainer.train()
print(f"metrics, allocations and checkpoints in {run_dir}")
