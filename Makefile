# The two entry points are `make demo` and `make test`; both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make test FAISS=gpu` on a CUDA host; never install both flavours.
FAISS ?= cpu
STAMP := $(VENV)/.installed-$(FAISS)

.PHONY: venv browser demo test lint layers typecheck unit clean protos bench-embed bench-import bench-index bench-filter bench-serve bench-faces bench-reload bench-gpu soak

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[$(FAISS),dev]"
	rm -f $(VENV)/.installed-*
	touch $@

# Debian's chromium and chromedriver, for the search page test (tests/test_search_page.py);
# CI runs this first. Elsewhere the test is skipped when they are missing.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
		-y -qq chromium chromium-driver)

demo: venv
	$(BIN)/python -m clipsearch.cli.demo

# The generated gRPC code is committed; tests/test_protos.py fails when it drifts.
protos: venv
	$(BIN)/python protos/generate.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The layer contract in pyproject.toml ([tool.importlinter]): a wrong-way import fails.
layers: venv
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest

test: lint layers typecheck unit

bench-embed: venv
	$(BIN)/python -m bench.embed_pipeline

bench-import: venv
	$(BIN)/python -m bench.import_rate

bench-serve: venv
	$(BIN)/python -m bench.serve_qps

# Encoder, embed and serve on CUDA beside their references; without CUDA it says so.
# On a lent GPU host: bench/gpu_host.sh (wheels carried in .gpu-wheels/).
bench-gpu: venv
	$(BIN)/python -m bench.gpu

# HTTP against gRPC on one server; SERVER_CLI=path/to/clipsearch measures another build.
bench-faces: venv
	$(BIN)/python -m bench.faces $(if $(SERVER_CLI),--server-cli $(SERVER_CLI))

# Reload phases at 100k, 1M and 5M x 768 (5M: 24 GB of disk while it runs) and the server's
# memory idle, under 32 clients and after a reload; BENCH_RELOAD_ARGS="--sizes 100000" for less.
BENCH_RELOAD_DIR ?= /tmp/clipsearch-bench-reload
bench-reload: venv
	$(BIN)/python -m bench.reload --workdir $(BENCH_RELOAD_DIR) $(BENCH_RELOAD_ARGS)

soak: venv
	$(BIN)/python -m bench.soak

# autofaiss 2.18 breaks on faiss >= 1.10, so it gets its own environment.
AUTOFAISS_VENV := bench/.venv-autofaiss
$(AUTOFAISS_VENV)/bin/autofaiss:
	$(PYTHON) -m venv $(AUTOFAISS_VENV)
	$(AUTOFAISS_VENV)/bin/pip install --quiet "faiss-cpu==1.9.0.post1" "autofaiss==2.18.0" "pyarrow<18"

BENCH_DIR ?= /tmp/clipsearch-bench-index
bench-index: venv $(AUTOFAISS_VENV)/bin/autofaiss
	$(BIN)/python -m bench.index_vs_autofaiss $(BENCH_DIR) --autofaiss $(AUTOFAISS_VENV)/bin/autofaiss

# The searches are timed on one thread, numpy's BLAS included (the build takes every core).
BENCH_FILTER_DIR ?= /tmp/clipsearch-bench-filter
bench-filter: venv
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m bench.filter --workdir $(BENCH_FILTER_DIR)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
