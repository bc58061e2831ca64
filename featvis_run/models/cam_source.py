"""Grad-CAM maps of images: the model run with gradients on, its recorded maps weighted by the gradient of the
explained detections' logits, one CAM per level and a ``fused`` map per layer.

Gradients need the model, so cached features do not serve a Grad-CAM run; the CAMs themselves are cached under a
key that adds the target (and ``output.pred_score_thr``, which ``class:`` and ``all`` depend on) to the features'
key, so a run that only changes how they are drawn reuses them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from featvis_run.errors import ConfigError
from featvis_run.maps.cam import FUSED, fuse_cams, grad_cam, valid_region
from featvis_run.maps.geometry import Geometry
from featvis_run.maps.targets import Target
from featvis_run.models.base import BuiltModel, ImageFeatures
from featvis_run.models.pool import ModelPool
from featvis_run.models.registry import explain_batch
from featvis_run.models.source import FeatureSource
from featvis_run.recording.levels import LevelKey, SpatialTokens, StageOutputs, extract_levels
from featvis_run.schema import ModelConfig, RecorderConfig, RecorderType
from featvis_run.store.cache import ActivationCache
from featvis_run.timing import Timer

__all__ = ["FUSED", "CamSource", "cam_levels"]

_CAM_VERSION = 1  # bump when the CAM or fusion rule changes (cached CAMs are then recomputed)


def _map_tensors(value: Any, fn: Callable[[Any], Any]) -> Any:
    """``value`` with every torch tensor in it replaced by ``fn(tensor)`` (tuples, lists, dicts, encoder tokens)."""
    if hasattr(value, "detach") and hasattr(value, "requires_grad"):
        return fn(value)
    if isinstance(value, SpatialTokens):
        return dataclasses.replace(value, tokens=_map_tensors(value.tokens, fn))
    if isinstance(value, StageOutputs):
        return dataclasses.replace(value, outputs=_map_tensors(value.outputs, fn))
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(_map_tensors(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def _gradients(records: dict[str, list[Any]], score: Any) -> dict[str, list[Any]]:
    """``records`` with each recorded tensor replaced by d score / d tensor (zeros where the score does not
    depend on it)."""
    import torch

    tensors: list[Any] = []
    _map_tensors(records, lambda t: tensors.append(t) or t)
    wanted = [t for t in tensors if t.requires_grad]
    grads = torch.autograd.grad(score, wanted, allow_unused=True) if wanted else ()
    by_id = {id(t): g for t, g in zip(wanted, grads, strict=True)}

    def grad_of(t: Any) -> Any:
        g = by_id.get(id(t))
        return g.detach() if g is not None else torch.zeros_like(t).detach()

    return _map_tensors(records, grad_of)


def cam_levels(
    acts: dict[LevelKey, np.ndarray], grads: dict[LevelKey, np.ndarray], geom: Geometry
) -> tuple[dict[LevelKey, np.ndarray], list[str]]:
    """One image's Grad-CAM per level ((1, H, W), weights averaged over the cells covering the image), then a
    ``fused`` map per layer (see :func:`~featvis_run.maps.cam.fuse_cams`); and notes on levels the score does not
    reach."""
    out: dict[LevelKey, np.ndarray] = {}
    by_layer: dict[str, list[np.ndarray]] = {}
    unreached: dict[str, list[str]] = {}
    for key, a in acts.items():
        g = grads[key]
        cam = grad_cam(a, g, valid_region(a.shape[-2:], geom))
        if not np.any(g):
            unreached.setdefault(key.layer, []).append(key.level)
        out[key] = cam
        by_layer.setdefault(key.layer, []).append(cam[0])
    for layer, cams in by_layer.items():
        out[LevelKey(layer, FUSED)] = fuse_cams(cams, geom)
    notes = [
        f"{layer}: the explained score has zero gradient at {', '.join(levels)} (a dense head scores each detection "
        "from one level, an RoI head from the level RoIAlign picks): their CAM is 0"
        for layer, levels in unreached.items()
    ]
    return out, notes


class CamSource(FeatureSource):
    """A :class:`FeatureSource` whose maps are Grad-CAMs of ``target`` (see the module docstring).

    Args:
        mc, recorder, cache, timer, key, pool: as :class:`FeatureSource`.
        target: what to explain.
        score_thr: ``output.pred_score_thr`` (``class:`` and ``all`` explain detections at or above it).
    """

    def __init__(
        self,
        mc: ModelConfig,
        recorder: RecorderConfig,
        cache: ActivationCache,
        timer: Timer,
        target: Target,
        score_thr: float,
        key: str = "model",
        pool: ModelPool | None = None,
    ):
        super().__init__(mc, recorder, cache, timer, key, pool)
        params = [n for n, s in self.recorders.items() if s.type is RecorderType.parameter]
        if params:
            raise ConfigError(
                f"reducer=gradcam weights recorded feature maps by their gradient, but recorder {params[0]!r} records "
                "a parameter; record module outputs (e.g. recorder=fpn)"
            )
        self.target, self.score_thr = target, score_thr
        cam = {"method": "gradcam", "target": target.text, "score_thr": score_thr, "version": _CAM_VERSION}
        self.spec = {**self.spec, "cam": cam}  # the cache key: CAMs of this target, not the plain features

    def _forward_pass(
        self, built: BuiltModel, arrays: Sequence[np.ndarray], boxes: Sequence[Sequence[float] | None] = ()
    ) -> list[ImageFeatures]:
        from featvis_run.recording.recorder import FeatureRecorder

        if any(box is not None for box in boxes):
            raise ConfigError("reducer=gradcam explains detectors and classifiers; it does not take model.bboxes")

        recorder = FeatureRecorder(built.model, self.recorders, self.mappings, batch=len(arrays), keep_graph=True)
        started = time.perf_counter()
        with recorder:
            explained = explain_batch(built, arrays, self.target, self.score_thr)
        grad_records = _gradients(recorder.records, explained.score)
        self.forward_passes += 1
        self.timer.add("forward", started)
        input_hw = explained.results[0].geometry.input_hw
        acts = extract_levels(recorder.records, self.recorders, self.mappings, len(arrays), input_hw)
        grads = extract_levels(grad_records, self.recorders, self.mappings, len(arrays), input_hw)
        recorder.records.clear()
        items = []
        for i, r in enumerate(explained.results):
            cams, notes = cam_levels(
                {k: v[i] for k, v in acts.items()}, {k: v[i] for k, v in grads.items()}, r.geometry
            )
            items.append(ImageFeatures(r.geometry, r.predictions, cams, (*r.notes, *notes)))
        return items
