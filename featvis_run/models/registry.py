"""Choosing the adapter of a model's library, and planning, building (or reusing) and running models through it."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np

from featvis_run.errors import ModelError
from featvis_run.models.base import BuiltModel, ImageResult, ModelAdapter, ModelPlan
from featvis_run.models.pool import ModelPool, shared_pool
from featvis_run.schema import ModelConfig

__all__ = ["ADAPTERS", "adapter_for", "build_model", "plan_model", "run_batch"]

#: library name -> "module:class" of its adapter (imported on first use: each pulls in torch and the library).
ADAPTERS = {"mmdet": "featvis_run.models.mmdet:MmdetAdapter"}


def adapter_for(repo: str, key: str = "model") -> ModelAdapter:
    """The adapter of library ``repo``; a ModelError lists the supported ones."""
    if repo not in ADAPTERS:
        raise ModelError(f"{key}.repo={repo!r} is not supported; choose one of {', '.join(ADAPTERS)}")
    module, _, name = ADAPTERS[repo].partition(":")
    return getattr(importlib.import_module(module), name)()


def plan_model(mc: ModelConfig, key: str = "model") -> ModelPlan:
    """Resolve and check a model config without building the model (see :meth:`ModelAdapter.plan`)."""
    return adapter_for(mc.repo, key).plan(mc, key)


def build_model(plan: ModelPlan | ModelConfig, pool: ModelPool | None = None) -> tuple[BuiltModel, bool]:
    """The planned model, reused from ``pool`` (default: this process's) when built before; returns
    (model, reused)."""
    if isinstance(plan, ModelConfig):
        plan = plan_model(plan)
    adapter = adapter_for(plan.repo, plan.key)
    return (pool if pool is not None else shared_pool()).get(plan.identity, lambda: adapter.build(plan))


def run_batch(built: BuiltModel, images: Sequence[np.ndarray]) -> list[ImageResult]:
    """Run BGR images through a built model as one batch (see :meth:`ModelAdapter.run_batch`)."""
    return adapter_for(built.plan.repo, built.plan.key).run_batch(built, images)
