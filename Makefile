# fastlogits — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.deps-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
# GPT-2's tokenizer: the shared offline copy when there is one, else the copy bundled with fastlogits.
ifneq ($(wildcard ../shared/gpt2-tokenizer/vocab.json),)
export FASTLOGITS_TOKENIZER ?= $(abspath ../shared/gpt2-tokenizer)
endif
FL := $(PY) -m fastlogits

.PHONY: help venv build build-dev test test-rust test-python test-thorough fuzz soak demo bench bench-kernels bench-ctranslate lint fmt clean

help: ## Show this help
	@echo "fastlogits — targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	touch $@

venv: $(STAMP) ## Create .venv with the test/bench dependencies (torch, transformers==5.23.0, ...)

build: $(STAMP) ## Build the Rust extension (release) and install it into .venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet

build-dev: $(STAMP) ## Debug build of the extension (fast to compile; slow to run) for Python-side work
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --quiet

test-rust: ## cargo test of the pure-Rust core (no Python needed)
	cargo test --quiet

test-python: build ## pytest suite against transformers (fast hypothesis profile)
	$(PY) -m pytest -q

test: test-rust test-python ## Everything: cargo test, then pytest (what CI runs)

test-thorough: build ## pytest with HYPOTHESIS_PROFILE=thorough (>= 1000 examples per property)
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q

FUZZ_SECONDS ?= 300
SOAK_SECONDS ?= 60
SOAK_THREADS ?= 8

fuzz: build ## Fuzz every entry point in worker processes for FUZZ_SECONDS (crashes, panics, hangs, NaN, ...)
	$(PY) tests/stress/fuzz.py --seconds $(FUZZ_SECONDS)

soak: build ## SOAK_THREADS threads share pipelines for SOAK_SECONDS; results vs single-threaded (bit-identical)
	$(PY) tests/stress/soak.py --seconds $(SOAK_SECONDS) --threads $(SOAK_THREADS)

demo: build ## The main job: GPT-2 generation with the full sampling chain, next-token table, quick benchmark
	@model=$$($(PY) -c "from transformers import GPT2LMHeadModel as M; M.from_pretrained('gpt2', local_files_only=True)" \
	    >/dev/null 2>&1 && echo "--model gpt2" || echo "--random-weights"); \
	if [ "$$model" = "--random-weights" ]; then \
	    echo "No trained GPT-2 weights in the local Hugging Face cache: using GPT-2 124M with RANDOM weights"; \
	    echo "(the real model's size and speed; the text is meaningless)."; \
	else echo "Using the trained GPT-2 124M from the local Hugging Face cache."; fi; \
	echo; echo "== fastlogits generate: temperature 0.8, top-k 50, top-p 0.95, repetition 1.2, no-repeat 3 =="; \
	$(FL) generate "The history of the Roman Empire" $$model --max-new-tokens 40 --do-sample --temperature 0.8 \
	    --top-k 50 --top-p 0.95 --repetition-penalty 1.2 --no-repeat-ngram-size 3 --seed 0 && \
	echo && echo "== fastlogits next-token ==" && \
	$(FL) next-token "The capital of France is" $$model --top-k 15 && \
	echo && echo "== fastlogits bench --quick ==" && \
	$(FL) bench --quick --out benches/results/quick

bench: build ## Full benchmarks (processors, new samplers, beam, generation, dataset jobs; CTranslate2 / Ray rows if installed): benches/results/
	$(PY) benches/bench_processors.py
	$(PY) benches/bench_samplers.py
	$(PY) benches/bench_beam.py
	$(PY) benches/bench_generate.py
	$(PY) benches/bench_batch.py
	$(PY) -c "import ray" 2>/dev/null && $(PY) benches/bench_ray.py || echo "(Ray not installed: skipping benches/bench_ray.py)"

bench-kernels: build ## torch's faster paths for the lean GPT-2 step (K×N LM head, torch.compile) vs the exact step
	$(PY) benches/bench_kernels.py

bench-ctranslate: build ## The generation benchmark with its CTranslate2 rows (pip-installs requirements-bench.txt)
	$(PIP) install -q -r requirements-bench.txt
	$(PY) benches/bench_generate.py

lint: $(STAMP) ## cargo fmt --check, clippy, ruff check + format --check, mypy.stubtest of _native.pyi
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(MAKE) --no-print-directory build
	$(PY) -m mypy.stubtest fastlogits._native

fmt: $(STAMP) ## Format Rust and Python sources
	cargo fmt --all
	$(VENV)/bin/ruff check --fix python tests benches
	$(VENV)/bin/ruff format python tests benches

clean: ## Remove build products (keeps .venv)
	cargo clean
	rm -rf build dist python/fastlogits/*.so
