"""Choosing the adapter of a model's library, and planning, building (or reusing) and running models through it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from featvis_run.errors import ModelError
from featvis_run.models.base import BuiltModel, ExplainedBatch, ImageResult, ModelAdapter, ModelPlan
from featvis_run.models.pool import ModelPool, shared_pool
from featvis_run.schema import ModelConfig, RecorderSpec

__all__ = [
    "ADAPTERS",
    "adapter_for",
    "adjust_recorders",
    "batch_groups",
    "build_model",
    "explain_batch",
    "plan_model",
    "run_batch",
]

#: library name -> "module:class" of its adapter (imported on first use: each pulls in torch and the library).
ADAPTERS = {"mmdet": "featvis_run.models.mmdet:MmdetAdapter", "mmseg": "featvis_run.models.mmseg:MmsegAdapter"}


def adapter_for(repo: str, key: str = "model") -> ModelAdapter:
    """The adapter of library ``repo``; a ModelError lists the supported ones."""
    if repo not in ADAPTERS:
        raise ModelError(f"{key}.repo={repo!r} is not supported; choose one of {', '.join(ADAPTERS)}")
    module, _, name = ADAPTERS[repo].partition(":")
    try:
        return getattr(importlib.import_module(module), name)()
    except ModuleNotFoundError as err:
        package = (err.name or repo).split(".")[0]
        raise ModelError(
            f"{key}.repo={repo!r} needs the package {package!r}, which is not installed here; install it (for mmseg: "
            "pip install 'featvis-run[mmseg]')"
        ) from err


def plan_model(mc: ModelConfig, key: str = "model", pool: ModelPool | None = None) -> ModelPlan:
    """Resolve and check a model config without building the model (see :meth:`ModelAdapter.plan`); a plan made in
    this process from the same config, with its files unchanged, is reused."""
    pool = pool if pool is not None else shared_pool()
    return pool.plan(_plan_key(mc, key), lambda: adapter_for(mc.repo, key).plan(mc, key))


def _plan_key(mc: ModelConfig, key: str) -> Hashable:
    """What a plan is made from: the model config, its key, and the state of the files it names directly."""

    def state(ref: str | None) -> tuple[int, int] | None:
        try:
            st = Path(ref).expanduser().stat() if ref and not ref.startswith("pkg://") else None
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns) if st else None

    fields = json.dumps(asdict(mc), sort_keys=True, default=str)
    return (fields, key, state(mc.checkpoint), state(mc.config or mc.mmdet_config))


def build_model(plan: ModelPlan | ModelConfig, pool: ModelPool | None = None) -> tuple[BuiltModel, bool]:
    """The planned model, reused from ``pool`` (default: this process's) when built before; returns
    (model, reused)."""
    if isinstance(plan, ModelConfig):
        plan = plan_model(plan, pool=pool)
    adapter = adapter_for(plan.repo, plan.key)
    return (pool if pool is not None else shared_pool()).get(plan.identity, lambda: adapter.build(plan))


def adjust_recorders(
    plan: ModelPlan, recorders: Mapping[str, RecorderSpec]
) -> tuple[dict[str, RecorderSpec], list[str]]:
    """The recorders pointed where this model computes what they name, with notes (see
    :meth:`OpenMMLabAdapter.adjust_recorders`)."""
    return adapter_for(plan.repo, plan.key).adjust_recorders(plan.cfg, recorders)


def batch_groups(plan: ModelPlan, images: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of the images that can share a forward pass of this model (see :meth:`ModelAdapter.batch_groups`)."""
    return adapter_for(plan.repo, plan.key).batch_groups(images)


def run_batch(built: BuiltModel, images: Sequence[np.ndarray]) -> list[ImageResult]:
    """Run BGR images through a built model as one batch (see :meth:`ModelAdapter.run_batch`)."""
    return adapter_for(built.plan.repo, built.plan.key).run_batch(built, images)


def explain_batch(built: BuiltModel, images: Sequence[np.ndarray], target: object, score_thr: float) -> ExplainedBatch:
    """Run BGR images with gradients on and pick the logits ``target`` explains (see
    :meth:`ModelAdapter.explain_batch`)."""
    return adapter_for(built.plan.repo, built.plan.key).explain_batch(built, images, target, score_thr)
