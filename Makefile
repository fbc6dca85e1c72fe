# The two entry points of a fresh machine (Python 3.11):
#   make run   - create .venv if missing, install, write the embedded data, run the full default pipeline
#   make test  - create .venv if missing, install with dev extras, run the test suite
#   make repro - the same run as DVC stages (dvc.yaml), with the environment's kedro and dvc on PATH
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: run repro test install install-dev browser clean-data prune-runs bench gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/kedro run --pipelines sample_data
	$(BIN)/kedro run

# dvc repro without activating .venv: the stages run `kedro`, found on PATH (REPRO_ARGS="multitask", "--dry", ...)
repro: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro $(REPRO_ARGS)

# Debian's Chromium renders the kedro-viz build in a browser test (installed when missing and allowed to)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: chromium not installed; the kedro-viz browser test will be skipped"; fi; }

# two pytest workers: most of the suite's time is Kedro/DVC subprocesses and start-up, not torch
PYTEST_ARGS ?= -n 2 --dist loadfile
test: install-dev browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# benchmark harness: tables on stdout, results in benchmarks/results/latest.json (BENCH_ARGS="--smoke", "--only backbone")
bench: install
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# on a CUDA machine: the CUDA tests and the GPU benchmarks in one go (~10 minutes), see benchmarks/gpu_check.sh
gpu-check: install-dev
	bash benchmarks/gpu_check.sh

# every generated file under data/ (all versions of every run) and the DVCLive logs (trainer.track_dir)
clean-data:
	find data -mindepth 2 ! -name .gitkeep -delete
	rm -rf dvclive

# keep the newest KEEP versions of every versioned dataset under data/ (checkpoints, loss histories, metrics)
KEEP ?= 3
prune-runs: install
	$(BIN)/python -m omnivec2_pipelines.io.versions --keep $(KEEP)
