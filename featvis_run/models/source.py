"""Where feature maps come from: the activation cache, or a lazily built model with its recorders attached."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from featvis_run.errors import RecordingError
from featvis_run.models.base import BuiltModel, CheckpointInfo, ImageFeatures, ImageResult, PredictionFailed
from featvis_run.models.pool import ModelPool
from featvis_run.models.registry import build_model, plan_model, run_batch
from featvis_run.predictions import Detections
from featvis_run.recording.levels import extract_levels
from featvis_run.schema import ModelConfig, RecorderConfig
from featvis_run.store.cache import ActivationCache
from featvis_run.store.images import InputImage
from featvis_run.store.manifest import ModelRecord
from featvis_run.timing import Timer

__all__ = ["FeatureSource"]


class FeatureSource:
    """Feature maps of images for one model and recorder: from the cache when possible, else from the model.

    The model is planned (config resolved, checkpoint hashed) up front but only built on the first cache miss, so a
    job whose images are all cached never builds it. :attr:`forward_passes` counts model calls (batches).

    Args:
        mc: the model's config group.
        recorder: the recorder config group (recorders and mappings).
        cache: the activation cache (possibly disabled).
        timer: where phase timings go.
        key: the model's config key (``model``, ``model_a``, ``model_b``), for messages.
        pool: where built models are kept for reuse (default: this process's).
    """

    def __init__(
        self,
        mc: ModelConfig,
        recorder: RecorderConfig,
        cache: ActivationCache,
        timer: Timer,
        key: str = "model",
        pool: ModelPool | None = None,
    ):
        self.key = key
        self.plan = plan_model(mc, key)
        self.recorders, self.mappings = recorder.parsed()
        self.spec = {
            "recorders": {k: asdict(v) for k, v in self.recorders.items()},
            "mappings": {k: asdict(v) for k, v in self.mappings.items()},
        }
        self.cache, self.timer, self.pool = cache, timer, pool
        self.forward_passes = 0
        self.classes: tuple[str, ...] = ()
        self._built: BuiltModel | None = None

    @property
    def name(self) -> str:
        return self.plan.config.name

    @property
    def random_init(self) -> bool:
        return self.plan.checkpoint_path is None

    def model(self) -> BuiltModel:
        """The built model (built, or reused from earlier in this process, on first use)."""
        if self._built is None:
            started = time.perf_counter()
            self._built, reused = build_model(self.plan, self.pool)
            if not reused:
                self.timer.add("model_load", started)
            ck = self._built.checkpoint
            self.cache.put_model(self.plan.identity, {"checkpoint": asdict(ck), "classes": list(self._built.classes)})
        return self._built

    def _checkpoint(self) -> CheckpointInfo | None:
        """The checkpoint's key match: from the built model, else from the cache (a run that never built it)."""
        if self._built is not None:
            return self._built.checkpoint
        record = self.cache.get_model(self.plan.identity)
        if record is None:
            return None
        info = record["checkpoint"]
        return CheckpointInfo(**{**info, "notes": tuple(info.get("notes", ()))})

    def features(self, images: Sequence[InputImage]) -> list[ImageFeatures]:
        """Each image's maps, detections and geometry; cache misses run through the model as one batch."""
        started = time.perf_counter()
        keys = [self.cache.key(self.plan.identity, im.sha256, self.spec) for im in images]
        found: list[ImageFeatures | None] = [self.cache.get(k) for k in keys]
        self.timer.add("cache_read", started)
        missing = [i for i, item in enumerate(found) if item is None]
        if missing:
            computed = self._forward([images[i].array for i in missing])
            started = time.perf_counter()
            for i, item in zip(missing, computed, strict=True):
                found[i] = self.cache.quantize(item)  # as the cache holds it: a later hit draws the same
                self.cache.put(keys[i], found[i])
            self.timer.add("cache_write", started)
        items = [f for f in found if f is not None]
        if items:
            self.classes = items[0].detections.class_names
        return items

    def _forward(self, arrays: Sequence[np.ndarray]) -> list[ImageFeatures]:
        from featvis_run.recording.recorder import FeatureRecorder

        built = self.model()
        recorder = FeatureRecorder(built.model, self.recorders, self.mappings, batch=len(arrays))
        started = time.perf_counter()
        failure: PredictionFailed | None = None
        with recorder:
            try:
                results = run_batch(built, arrays)
            except PredictionFailed as err:  # keep what was recorded before the head failed
                failure = err
                note = f"the model failed after its inputs were prepared ({err}); maps drawn without predictions"
                results = [ImageResult(g, _no_detections(built.classes), (note,)) for g in err.geometries]
        self.forward_passes += 1
        self.timer.add("forward", started)
        try:
            levels = extract_levels(
                recorder.records, self.recorders, self.mappings, len(arrays), results[0].geometry.input_hw
            )
        except RecordingError:
            if failure is not None:  # it failed before the recorded layers ran: that is the error to report
                raise failure.cause from None
            raise
        return [
            ImageFeatures(r.geometry, r.detections, {key: maps[i] for key, maps in levels.items()}, r.notes)
            for i, r in enumerate(results)
        ]

    def model_record(self) -> ModelRecord:
        """The manifest's description of the model (key-match counts from the build, or as the cache kept them)."""
        plan, mc, built = self.plan, self.plan.config, self._built
        ck = self._checkpoint() if plan.checkpoint_path else None
        return ModelRecord(
            name=mc.name,
            repo=plan.repo,
            mmdet_config=str(plan.config_path),
            checkpoint=os.path.abspath(plan.checkpoint_path) if plan.checkpoint_path else None,
            sha256=plan.checkpoint_sha256,
            seed=mc.seed if self.random_init else None,
            device=mc.device,
            num_classes=len(built.classes if built is not None else self.classes),
            matched_keys=ck.matched_keys if ck else None,
            missing_keys=ck.missing_keys if ck else None,
            unexpected_keys=ck.unexpected_keys if ck else None,
        )

    def model_notes(self) -> list[str]:
        """The loud notes about the weights: random init, a partial checkpoint accepted, non-finite weights."""
        if not self.random_init:
            ck = self._checkpoint()
            return list(ck.notes) if ck is not None else []
        return [
            f"RANDOM INIT: {self.name} has no checkpoint ({self.key}.checkpoint=null), weights are random (seed "
            f"{self.plan.config.seed}); maps show an untrained network. Pass {self.key}.checkpoint=/path/to/weights.pth"
        ]


def _no_detections(classes: tuple[str, ...]) -> Detections:
    return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), classes)
