# The two entry points are `make demo` and `make test`; both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make test FAISS=gpu` on a CUDA host; never install both flavours.
FAISS ?= cpu
STAMP := $(VENV)/.installed-$(FAISS)

.PHONY: venv demo test lint typecheck unit clean bench-embed

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[$(FAISS),dev]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	$(BIN)/python -m clipsearch.demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

test: lint typecheck unit

bench-embed: venv
	$(BIN)/python -m bench.embed_pipeline

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
