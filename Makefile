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
export FASTLOGITS_TOKENIZER ?= $(abspath ../shared/gpt2-tokenizer)

.PHONY: help venv build test test-rust test-python test-thorough demo bench bench-quick lint fmt clean

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

test-rust: ## cargo test of the pure-Rust core (no Python needed)
	cargo test --quiet

test-python: build ## pytest suite against transformers (fast hypothesis profile)
	$(PY) -m pytest -q

test: test-rust test-python ## Everything: cargo test, then pytest (what CI runs)

test-thorough: build ## pytest with HYPOTHESIS_PROFILE=thorough (>= 1000 examples per property)
	HYPOTHESIS_PROFILE=thorough $(PY) -m pytest -q

demo: build ## The main job: processor benchmark table vs transformers (quick)
	$(PY) -m fastlogits.bench --quick

bench: build ## Full benchmarks vs transformers: writes benches/results/*.md|json|png
	$(PY) benches/bench_processors.py

lint: $(STAMP) ## cargo fmt --check, clippy, ruff
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(VENV)/bin/ruff check python tests benches

fmt: $(STAMP) ## Format Rust and Python sources
	cargo fmt --all
	$(VENV)/bin/ruff check --fix python tests benches

clean: ## Remove build products (keeps .venv)
	cargo clean
	rm -rf build dist python/fastlogits/*.so
