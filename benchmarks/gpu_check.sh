#!/usr/bin/env bash
# The GPU paths on one GPU, in at most about 8 minutes, with no download. NOT YET RUN: no GPU
# has been lent to this project so far; the first run of this script is its test.
#
# The model is a randomly initialised Qwen2.5-1.5B-shaped Qwen2 (written here from its shape,
# bf16) with the embedded world's character tokenizer, trained on the embedded world's prompts:
# the point is speed and memory on a 1.5B model, not accuracy. One GVM-RAFT++ iteration
# (64 prompts x 8 samples, stage 1 of 4 reused) per path:
#   hf-bf16-sdpa    transformers generate, bf16 autocast, sdpa attention
#   hf-flash        the same with flash_attention_2 (when flash-attn is installed)
#   vllm            vLLM rollouts colocated with training, weights reloaded after the update
#                   (when vllm is installed)
#   fsdp2           FSDP2 on one process (accelerate launch), bf16, sdpa
# then a table: samples/s and tokens/s of generation, M-step seconds, peak GPU memory.
#
#   bash benchmarks/gpu_check.sh            (PYTHON=... to choose the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-runs/gpu-check}
WORLD=src/gvm_raft/tasks/world
LIMIT=${LIMIT:-150}  # seconds per path

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no GPU visible to torch'" || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
[ -f "$OUT/model/config.json" ] || "$PY" benchmarks/gpu_check.py model "$OUT/model" || exit 1

COMMON=(
  "model_name_or_path=$OUT/model" "train_file=$WORLD/data/train.jsonl"
  "test_file=$WORLD/data/test.jsonl" reward=arithmetic prompt_template=plain iterations=1
  eval_max_prompts=64 eval_samples=1 eval_greedy=false rollout_batch_size=512
  micro_batch_size=16 mixed_precision=bf16 resume=false
)
train() {  # name, launcher..., then overrides
  local name=$1; shift
  rm -rf "${OUT:?}/$name"
  echo "== $name"
  timeout "$LIMIT" "$@" "${COMMON[@]}" "output_dir=$OUT/$name" --quiet \
    || echo "$name: failed or timed out (exit $?)"
}
CLI=("$PY" -m gvm_raft.cli train src/gvm_raft/configs/demo.yaml)

train hf-bf16-sdpa "${CLI[@]}" attn_implementation=sdpa
if "$PY" -c "import flash_attn" 2>/dev/null; then
  train hf-flash "${CLI[@]}" attn_implementation=flash_attention_2
else
  echo "== hf-flash: skipped (flash-attn not installed)"
fi
if "$PY" -c "import vllm" 2>/dev/null; then
  train vllm "${CLI[@]}" rollout_backend=vllm vllm_gpu_memory_utilization=0.3
else
  echo "== vllm: skipped (vllm not installed)"
fi
train fsdp2 "$PY" -m accelerate.commands.launch --config_file configs/accelerate/fsdp2-gpus.yaml \
  --num_processes 1 -m gvm_raft.cli train src/gvm_raft/configs/demo.yaml attn_implementation=sdpa

"$PY" benchmarks/gpu_check.py summary "$OUT"/hf-bf16-sdpa "$OUT"/hf-flash "$OUT"/vllm "$OUT"/fsdp2
