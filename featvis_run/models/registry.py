"""Choosing the adapter of a model's library, and planning, building (or reusing) and running models through it."""

from __future__ import annotations

import importlib
import json
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.errors import ModelError
from featvis_run.models.base import BuiltModel, ExplainedBatch, ImageResult, ModelAdapter, ModelPlan
from featvis_run.models.pool import ModelPool, shared_pool
from featvis_run.schema import ModelConfig, RecorderSpec

__all__ = [
    "ADAPTERS",
    "EXTRAS",
    "adapt_recorders",
    "adapter_for",
    "batch_groups",
    "build_model",
    "check_recorders",
    "redirect_recorders",
    "explain_batch",
    "plan_model",
    "run_batch",
]

#: library name -> "module:class" of its adapter (imported on first use: each pulls in torch and the library).
ADAPTERS = {
    "mmdet": "featvis_run.models.mmdet:MmdetAdapter",
    "mmseg": "featvis_run.models.mmseg:MmsegAdapter",
    "mmpose": "featvis_run.models.mmpose:MmposeAdapter",
    "mmpretrain": "featvis_run.models.mmpretrain:MmpretrainAdapter",
}
#: the featvis-run extra that installs each library (pip install 'featvis-run[<extra>]')
EXTRAS = {"mmseg": "mmseg", "mmpretrain": "mmpretrain", "mmpose": "mmpose"}


def adapter_for(repo: str, key: str = "model") -> ModelAdapter:
    """The adapter of library ``repo``; a ModelError lists the supported ones."""
    if repo not in ADAPTERS:
        raise ModelError(f"{key}.repo={repo!r} is not supported; choose one of {', '.join(ADAPTERS)}")
    module, _, name = ADAPTERS[repo].partition(":")
    try:
        return getattr(importlib.import_module(module), name)()
    except ModuleNotFoundError as err:
        package = (err.name or repo).split(".")[0]
        fix = f"pip install 'featvis-run[{EXTRAS[repo]}]'" if repo in EXTRAS else f"pip install {package}"
        raise ModelError(
            f"{key}.repo={repo!r} needs the package {package!r}, which is not installed here; install it ({fix})"
        ) from err


def adapt_recorders(plan: ModelPlan, recorders: dict[str, RecorderSpec]) -> dict[str, RecorderSpec]:
    """The recorders as the model's library records them (a classifier's ``recorder=backbone``: its stages)."""
    adapt = getattr(adapter_for(plan.repo, plan.key), "adapt_recorders", None)
    return adapt(recorders) if adapt is not None else recorders


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


def redirect_recorders(
    plan: ModelPlan, recorders: Mapping[str, RecorderSpec]
) -> tuple[dict[str, RecorderSpec], list[str]]:
    """The recorders pointed where this model computes what they name, with notes (see
    :meth:`OpenMMLabAdapter.redirect_recorders`)."""
    return adapter_for(plan.repo, plan.key).redirect_recorders(plan.cfg, recorders)


def batch_groups(plan: ModelPlan, images: Sequence[np.ndarray]) -> list[list[int]]:
    """Indices of the images that can share a forward pass of this model (see :meth:`ModelAdapter.batch_groups`)."""
    return adapter_for(plan.repo, plan.key).batch_groups(images)


def run_batch(
    built: BuiltModel, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float] | None] | None = None
) -> list[ImageResult]:
    """Run BGR images through a built model as one batch (see :meth:`ModelAdapter.run_batch`); ``boxes`` (a person
    box per image, or None for the whole image) go to adapters that take them (top-down pose models)."""
    adapter = adapter_for(built.plan.repo, built.plan.key)
    if boxes is not None and any(b is not None for b in boxes):
        return adapter.run_batch(built, images, boxes=boxes)
    return adapter.run_batch(built, images)


def check_recorders(plan: ModelPlan, recorders: Mapping[str, Any]) -> None:
    """Refuse, before the model is built, recorders the planned model cannot feed (e.g. ``recorder=head`` on a pose
    model whose head outputs coordinates): the adapter's ``check_recorders``, when it has one."""
    check = getattr(adapter_for(plan.repo, plan.key), "check_recorders", None)
    if check is not None:
        check(plan, recorders)


def explain_batch(built: BuiltModel, images: Sequence[np.ndarray], target: object, score_thr: float) -> ExplainedBatch:
    """Run BGR images with gradients on and pick the logits ``target`` explains (see
    :meth:`ModelAdapter.explain_batch`)."""
    return adapter_for(built.plan.repo, built.plan.key).explain_batch(built, images, target, score_thr)
