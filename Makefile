# featvis-run: install, test and report targets. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
WHEELHOUSE ?=
FIND_LINKS := $(if $(WHEELHOUSE),--find-links $(abspath $(WHEELHOUSE)),)
# The exact versions `make install` (and so CI) uses; pyproject.toml only declares the ranges featvis-run accepts.
# torch is named with `===` (exact string match) in every pip call: `==2.13.0` also matches a local build such as
# `2.13.0+cpu` from a find-links folder (this machine has one, and pip prefers it), while `===2.13.0` takes only the
# standard PyPI build, the one a user's `pip install torch` gets (CUDA 13 inside; it runs on CPU).
TORCH_VERSION := 2.13.0
TORCHVISION_VERSION := 0.28.0
MMCV_VERSION := 2.1.0
MMENGINE_SPEC := >=0.10,<0.11
MMDET_VERSION := 3.3.0
MMSEG_VERSION := 1.2.2
MMPRETRAIN_VERSION := 1.2.0
MMPOSE_VERSION := 1.3.2
XTCOCOTOOLS_VERSION := 1.14.3
PINS := torch===$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION) mmcv==$(MMCV_VERSION) 'mmengine$(MMENGINE_SPEC)' \
	mmdet==$(MMDET_VERSION) mmsegmentation==$(MMSEG_VERSION) mmpretrain==$(MMPRETRAIN_VERSION) mmpose==$(MMPOSE_VERSION) \
	xtcocotools==$(XTCOCOTOOLS_VERSION) ftfy regex 'setuptools>=77.0.3,<81'

.DEFAULT_GOAL := help
.PHONY: help install test lint docs mutation-check wheel-check clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: ## Create .venv: torch, torchvision, mmcv (ops), mmdet, mmseg, mmpretrain, mmpose, featvis-run[dev,...]
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade 'setuptools>=61,<70' wheel ninja packaging
	$(PIP) install torch===$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION)
	$(PIP) install 'mmengine$(MMENGINE_SPEC)'
	# mmcv 2.1.0 ships only a source archive on PyPI: build it with its ops against the pinned torch
	# (its setup.py needs an old setuptools), unless WHEELHOUSE holds a matching prebuilt wheel.
	$(PIP) install 'setuptools<70'
	MMCV_WITH_OPS=1 MAX_JOBS=2 $(PIP) install --no-build-isolation $(FIND_LINKS) mmcv==$(MMCV_VERSION)
	# torch wants setuptools>=77.0.3; mmengine's `mmdet::` config bases need pkg_resources (gone in 81).
	$(PIP) install 'setuptools>=77.0.3,<81'
	# Two mmpose dependencies that do not install the plain way: chumpy's setup.py imports pip (so no build
	# isolation), and the xtcocotools wheel on PyPI is compiled against numpy 1 ("numpy.dtype size changed" under
	# numpy 2), so it is built from source against the installed numpy (Cython needed).
	$(PIP) install Cython numpy
	$(PIP) install --no-build-isolation chumpy
	$(PIP) install --no-build-isolation --no-binary xtcocotools xtcocotools==$(XTCOCOTOOLS_VERSION)
	# featvis-run with its dev, mmseg, mmpretrain and mmpose extras. The pins are named again so that the resolver
	# keeps the torch, mmcv and xtcocotools installed above and takes exactly the OpenMMLab versions CI tests.
	$(PIP) install $(FIND_LINKS) --no-binary xtcocotools -e '.[dev,mmseg,mmpretrain,mmpose]' $(PINS)
	$(BIN)/python -c "import torch, torchvision, mmcv.ops, mmdet, mmseg, mmseg.utils, mmpretrain, mmpose; \
	  boxes = torch.tensor([[0., 0., 2., 2.], [0., 0., 2., 2.1], [5., 5., 6., 6.]]); \
	  scores = torch.tensor([0.9, 0.8, 0.7]); \
	  assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2], 'torchvision.ops.nms'; \
	  assert mmcv.ops.nms(boxes, scores, 0.5)[1].tolist() == [0, 2], 'mmcv.ops.nms'; \
	  print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'mmcv', mmcv.__version__, \
	  'mmdet', mmdet.__version__, 'mmseg', mmseg.__version__, 'mmpretrain', mmpretrain.__version__, \
	  'mmpose', mmpose.__version__, 'ops ok')"

test: lint ## Lint, then run the test suite
	$(BIN)/python -m pytest -q

lint: ## ruff over the package, tests and scripts
	$(BIN)/ruff check featvis_run hydra_plugins tests $(wildcard scripts)

docs: ## Build the docs site into site/ in strict mode (generates docs/reference/configuration.md and manifest.md)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --clean --site-dir site

mutation-check: ## Break the code one mutant at a time (scripts/mutants.py); the fast tests must catch every one
	$(BIN)/python scripts/mutation_check.py --report outputs/mutation-check.md

# ---- standard reports: offline by default (demo scene, random init); CHECKPOINT=... IMAGES=... for real use ----
FEATVIS := $(BIN)/featvis-run
REPORTS ?= outputs/reports
STAMP := $(shell date +%Y%m%d-%H%M%S)
MODEL ?=
CHECKPOINT ?=
IMAGES ?=
CHECKPOINT_A ?=
CHECKPOINT_B ?=
MODEL_ARGS = $(if $(MODEL),model=$(MODEL),) $(if $(CHECKPOINT),model.checkpoint=$(CHECKPOINT),)
INPUT_ARGS = $(if $(IMAGES),experiment=multi_image images=$(IMAGES),)
REDUCERS := pixel_wise_max,squeeze_mean,select_max,none
.PHONY: report-fpn report-backbone report-topk report-diff report-sweep report-screenshots bench clean-cache demo-model train-hook-demo

report-fpn: ## Every FPN level with the four reducers (MODEL=, CHECKPOINT=, IMAGES=)
	$(FEATVIS) -m $(MODEL_ARGS) $(INPUT_ARGS) recorder=fpn reducer=$(REDUCERS) topk=8 hydra.sweep.dir=$(REPORTS)/fpn/$(STAMP)
	@echo "report: $(abspath $(REPORTS)/fpn/$(STAMP))/index.html"

report-backbone: ## Every backbone stage with the four reducers
	$(FEATVIS) -m $(MODEL_ARGS) $(INPUT_ARGS) recorder=backbone reducer=$(REDUCERS) topk=8 hydra.sweep.dir=$(REPORTS)/backbone/$(STAMP)
	@echo "report: $(abspath $(REPORTS)/backbone/$(STAMP))/index.html"

report-topk: ## Top-k channel grids of every FPN level for topk 4, 8, 16
	$(FEATVIS) -m $(MODEL_ARGS) $(INPUT_ARGS) recorder=fpn reducer=none topk=4,8,16 output=heatmap hydra.sweep.dir=$(REPORTS)/topk/$(STAMP)
	@echo "report: $(abspath $(REPORTS)/topk/$(STAMP))/index.html"

report-diff: ## RetinaNet-R101 vs R50 per FPN level: diff maps, panels, mean|A-B|, cosine, CKA (CHECKPOINT_A=, CHECKPOINT_B=)
	$(FEATVIS) experiment=diff model@model_a=retinanet_r101 model@model_b=retinanet_r50 \
	  $(if $(CHECKPOINT_A),model_a.checkpoint=$(CHECKPOINT_A),) $(if $(CHECKPOINT_B),model_b.checkpoint=$(CHECKPOINT_B),) \
	  $(if $(IMAGES),images=$(IMAGES),) reducer=pixel_wise_max use_norm=true output.dir=$(REPORTS)/diff/$(STAMP)
	@echo "report: $(abspath $(REPORTS)/diff/$(STAMP))/index.html"

report-sweep: ## The 8-job sweep (4 reducers x topk 4, 8) with its gallery
	$(FEATVIS) -m $(MODEL_ARGS) $(INPUT_ARGS) reducer=$(REDUCERS) topk=4,8 hydra.sweep.dir=$(REPORTS)/sweep/$(STAMP)
	@echo "report: $(abspath $(REPORTS)/sweep/$(STAMP))/index.html"

report-screenshots: ## Screenshots of the report page's views (demo runs, Debian's chromium) into outputs/screenshots/
	$(BIN)/python scripts/report_screenshots.py --out outputs/screenshots $(if $(DOCS),--docs,)

bench: ## Benchmark: cached sweep vs cold runs, rendering vs MMEngine (writes benchmarks/RESULTS.md)
	$(BIN)/python scripts/bench.py --out benchmarks/RESULTS.md

demo-model: ## Retrain the shipped demo model from scratch (~16 min on 2 CPU cores; writes featvis_run/assets/)
	$(BIN)/python scripts/train_demo_model.py --threads 2

train-hook-demo: ## Train the demo detector 60 iterations with FeatvisHook every 20 (~1-3 min on 2 CPU cores)
	$(BIN)/python scripts/train_hook_demo.py --iters 60 --interval 20

clean-cache: ## Delete the activation cache (outputs/cache)
	rm -rf outputs/cache
