# SteadyRank developer commands. `make test` is what CI runs.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed

.PHONY: install tools test test-compose up lint bench-ops bench-train bench-serve bench-workers bench-dist bench-continuous bench-cuda build-ops clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstall only when the project's metadata changes; the op build itself is incremental.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)
	$(PY) -m steadyrank.ops.build
	$(PY) -m steadyrank.service.protos > /dev/null

# System tools from Debian packages (promtool for the alert rule tests); needs root.
tools:
	deploy/install-tools.sh

build-ops: install
	$(PY) -m steadyrank.ops.build --force

# Lint first: a style error fails in seconds, not after the slow suite.
test: install lint
	$(PY) -m pytest -q

# docker compose end to end (needs root: installs Docker, builds stand-in images).
test-compose: install
	PIP="$(PIP)" deploy/test/prepare-docker.sh
	$(PY) -m pytest -q -m compose tests/deploy/test_compose.py

# The stack as local processes (no Docker): data, trainer, server, traffic, Prometheus.
# CONFIG=path/to/schema.toml trains and serves another schema (default configs/smelu.toml);
# STREAM=1: continuous training on a live Criteo-shaped stream (configs/stream.toml).
up: install
	$(PY) -m steadyrank.cli up $(if $(CONFIG),--config $(CONFIG)) $(if $(STREAM),--stream)

lint: install
	$(PY) -m ruff check .

bench-ops: install
	$(PY) bench/ops_bench.py

bench-train: install
	$(PY) bench/train_bench.py

bench-serve: install
	$(PY) bench/serve_bench.py

bench-workers: install
	$(PY) bench/workers_bench.py

bench-dist: install
	$(PY) bench/dist_bench.py --repeats 3

bench-continuous: install
	$(PY) bench/continuous_bench.py --rounds 10

# Standalone CUDA checks and bandwidth benchmarks of the SmeLU and g-SmeLU kernels (need a GPU
# to run; compile anywhere with nvcc).
CUDA_ARCH ?= -gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_80,code=sm_80
bench-cuda:
	mkdir -p bench/out
	for h in cuda_smelu_check cuda_gsmelu_check; do \
	  nvcc -O3 -std=c++17 $(CUDA_ARCH) -I ops/cc/kernels bench/$$h.cu -o bench/out/$$h || exit 1; \
	done
	bench/out/cuda_smelu_check --json bench/out/cuda_smelu_check.json
	bench/out/cuda_gsmelu_check --json bench/out/cuda_gsmelu_check.json

clean:
	rm -rf ops/_lib build *.egg-info .pytest_cache .ruff_cache
