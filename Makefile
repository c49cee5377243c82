# medseg developer entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.medseg-installed
DEMO_OUT ?= demo_output

.PHONY: install test test-slow lint demo lab bench bench-env clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, from the pinned constraint, so nothing pulls a CUDA build
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# --dist load: xdist's file-grouped schedulers (loadfile/loadscope) can wait forever after a worker dies
# (pytest-xdist #784/#1378); load replaces the worker and goes on. --timeout: a hung test fails, with every
# thread's stack printed, after 15 minutes (the whole suite takes ~5 on 2 cores).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist load --timeout 900 --timeout-method thread -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: $(STAMP)
	$(PY) -m medseg.demo --out $(DEMO_OUT)

# JupyterLab on the notebooks (installed by the `notebooks` extra, part of `dev`); Ctrl-C stops it.
# LAB_ARGS passes options, e.g. make lab LAB_ARGS="--no-browser --port 8890"
LAB_ARGS ?=
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks $(LAB_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

# The peers' own environment for benchmarks/ (nnU-Net v2's predictor): never a dependency of medseg.
# Same torch pin as medseg's (constraints.txt), so both time the same CPU build.
BENCH_VENV ?= .venv-bench
bench-env:
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BENCH_VENV)/bin/python -m pip install -q -c constraints.txt nnunetv2==2.8.1

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
