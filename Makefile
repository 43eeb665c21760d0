# Each target wraps one python command that README.md also shows, for readers without make.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Elsewhere, point pip at PyTorch's CPU-only wheel index to avoid the multi-GB CUDA build:
#   make setup TORCH_INDEX=<index URL>
TORCH_INDEX ?=
PIP_INDEX := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
# With no network (a classroom): install only from a wheelhouse made by `python -m tools.wheelhouse`:
#   make setup WHEELHOUSE=build/classroom/wheelhouse
WHEELHOUSE ?=
PIP_SOURCE := $(if $(WHEELHOUSE),--no-index --find-links $(WHEELHOUSE),$(PIP_INDEX))
# the test environment: notebooks in fast mode, no progress bars (their output changes every run), and offline:
# tests/offline/sitecustomize.py cuts the network (except loopback) in every process, notebook kernels included
TEST_ENV := BERTNB_FAST=1 TQDM_DISABLE=1 MPLBACKEND=Agg BERTNB_OFFLINE=1 PYTHONPATH=$(CURDIR)/tests/offline \
            HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: setup lab test test-slow test-wheel test-faults test-browser test-classroom student-copies solved-copies \
        nbgrader-release wheelhouse bench clean

setup: $(VENV)/.installed

# Reinstalls only when the pins change, so a second `make test` reuses the venv in seconds.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_SOURCE) -r requirements.txt
	touch $@

# As root (containers, cloud VMs) JupyterLab refuses to start without --allow-root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

lab: setup
	$(PY) -m jupyter lab --ip=127.0.0.1 --no-browser $(ALLOW_ROOT) notebooks/

test: setup
	$(TEST_ENV) $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env -q

# Slower checks run by CI after `make test`: every notebook twice in one kernel, in its default mode.
test-slow: setup
	TQDM_DISABLE=1 MPLBACKEND=Agg $(PY) -m tests.run_notebooks_twice notebooks

# The user's path: the wheel installed (not editable) in a clean venv, each chapter run alone in an empty folder.
test-wheel: setup
	$(PY) -m tests.run_wheel_check

# A small pretraining run killed with SIGKILL again and again ends bit-identical to an uninterrupted one.
test-faults: setup
	$(PY) -m tests.run_fault_injection

# Chapter 09's attention explorer in a real browser: JupyterLab on 127.0.0.1, Debian's Chromium (apt, as root on
# CI) driven by playwright (pip; `playwright install` is never run: it would download its own browser).
test-browser: setup
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check "playwright>=1.50"
	$(PY) -m tests.run_browser_test

# The classroom kit (docs/TEACHING.md): copies to hand out, solved copies, an nbgrader release, a wheelhouse.
student-copies: setup
	$(PY) -m tools.student_copies --out build/classroom/student

solved-copies: setup
	$(PY) -m tools.solved_copies --out build/classroom/solved

nbgrader-release: setup
	$(PY) -m tools.nbgrader_release --out build/classroom/nbgrader

# e.g. make wheelhouse WHEELHOUSE_ARGS="--platform windows-x86_64 --python-version 3.12"
wheelhouse: setup
	$(PY) -m tools.wheelhouse --out build/classroom/wheelhouse $(WHEELHOUSE_ARGS)

# Every solved copy run (fast mode) with every check correct; a wheelhouse installed into a fresh venv offline.
test-classroom: setup
	$(PY) -m tests.run_classroom_check

bench: setup
	$(PY) benchmarks/pretrain_step.py

clean:
	rm -rf $(VENV) .pytest_cache
