# featvis-run: install, test and report targets. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
WHEELHOUSE ?=
FIND_LINKS := $(if $(WHEELHOUSE),--find-links $(abspath $(WHEELHOUSE)),)
TORCH_VERSION := 2.13.0
MMCV_VERSION := 2.1.0

.DEFAULT_GOAL := help
.PHONY: help install test lint wheel-check clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: ## Create .venv and install torch, mmcv (ops), mmdet, hydra and featvis-run[dev]
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade 'setuptools>=61,<70' wheel ninja packaging
	$(PIP) install torch==$(TORCH_VERSION)
	$(PIP) install 'mmengine>=0.10,<0.11'
	# mmcv 2.1.0 ships only a source archive on PyPI: build it with its ops against the pinned torch
	# (its setup.py needs an old setuptools), unless WHEELHOUSE holds a matching prebuilt wheel.
	$(PIP) install 'setuptools<70'
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install --no-build-isolation $(FIND_LINKS) mmcv==$(MMCV_VERSION)
	# torch wants setuptools>=77.0.3; mmengine's `mmdet::` config bases need pkg_resources (gone in 81).
	$(PIP) install 'setuptools>=77.0.3,<81'
	$(PIP) install $(FIND_LINKS) -e '.[dev]'
	$(BIN)/python -c "import mmcv.ops, mmdet; print('mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'ops ok')"

test: lint ## Lint, then run the test suite
	$(BIN)/python -m pytest -q

lint: ## ruff over the package, tests and scripts
	$(BIN)/ruff check featvis_run tests $(wildcard scripts)
