"""Where feature maps come from: the activation cache, or a lazily built model with its recorders attached."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from featvis_run.errors import ConfigError, ModelError, RecordingError
from featvis_run.models.base import BuiltModel, CheckpointInfo, ImageFeatures, ImageResult, PredictionFailed
from featvis_run.models.op_kernels import missing_kernel, missing_kernel_message
from featvis_run.models.pool import ModelPool
from featvis_run.models.registry import (
    adapt_recorders,
    batch_groups,
    build_model,
    check_recorders,
    plan_model,
    redirect_recorders,
    run_batch,
)
from featvis_run.recording.levels import extract_levels
from featvis_run.schema import MappingSpec, ModelConfig, RecorderConfig, RecorderSpec
from featvis_run.store.cache import ActivationCache
from featvis_run.store.images import InputImage
from featvis_run.store.manifest import ModelRecord
from featvis_run.timing import Timer

__all__ = ["FeatureSource", "record_batch"]


def record_batch(
    built: BuiltModel,
    arrays: Sequence[np.ndarray],
    recorders: dict[str, RecorderSpec],
    mappings: dict[str, MappingSpec],
    boxes: Sequence[Sequence[float] | None] | None = None,
) -> list[ImageFeatures]:
    """One forward pass of ``built`` over BGR images with the recorders attached: each image's maps, geometry and
    predictions (maps recorded before a failing head are kept, with a note). ``boxes``: a pose model's person box
    per image (None: the whole image)."""
    from featvis_run.recording.recorder import FeatureRecorder

    recorder = FeatureRecorder(built.model, recorders, mappings, batch=len(arrays))
    failure: PredictionFailed | None = None
    with recorder:
        try:
            results = run_batch(built, arrays, boxes)
        except PredictionFailed as err:  # keep what was recorded before the head failed
            failure = err
            note = f"the model failed after its inputs were prepared ({err}); maps drawn without predictions"
            results = [ImageResult(g, None, (note,)) for g in err.geometries]
    try:
        levels = extract_levels(recorder.records, recorders, mappings, len(arrays), results[0].geometry.input_hw)
    except RecordingError:
        if failure is None:
            raise
        # it failed before the recorded layers ran: that is the error to report
        kernel = missing_kernel(failure.cause)
        if kernel is not None:  # an mmcv op without a kernel for this device: one line, exit 2
            message = missing_kernel_message(kernel, built.plan.config.name, list(recorders), built.plan.key)
            raise ModelError(message) from failure.cause
        raise failure.cause from None
    return [
        ImageFeatures(r.geometry, r.predictions, {key: maps[i] for key, maps in levels.items()}, r.notes)
        for i, r in enumerate(results)
    ]


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
        side: which side of an MMRazor diff vis_config (``recorder.file``) to use: 1, 2, or None.
    """

    def __init__(
        self,
        mc: ModelConfig,
        recorder: RecorderConfig,
        cache: ActivationCache,
        timer: Timer,
        key: str = "model",
        pool: ModelPool | None = None,
        side: int | None = None,
    ):
        self.key = key
        self.plan = plan_model(mc, key, pool)
        self.recorder_notes: list[str] = []
        if recorder.file:
            from featvis_run.recording.mmrazor import load_vis_config

            vis = load_vis_config(recorder.file, side)
            self.recorders, self.mappings, self.recorder_notes = vis.recorders, vis.mappings, list(vis.notes)
        elif recorder.name == "mmrazor":
            raise ConfigError(
                "recorder=mmrazor reads an MMRazor vis_config file: add recorder.file=/path/to/vis_config.py"
            )
        else:
            self.recorders, self.mappings = recorder.parsed()
        self.recorders = adapt_recorders(self.plan, self.recorders)
        self.recorders, redirected = redirect_recorders(self.plan, self.recorders)
        self.recorder_notes += redirected
        self._precheck()
        self.spec = {
            "recorders": {k: asdict(v) for k, v in self.recorders.items()},
            "mappings": {k: asdict(v) for k, v in self.mappings.items()},
        }
        self.cache, self.timer, self.pool = cache, timer, pool
        self.forward_passes = 0
        self.classes: tuple[str, ...] = ()
        self._built: BuiltModel | None = None

    def _precheck(self) -> None:
        """What can be checked before the model is built: ``data_idx`` paths, and a preset's ``neck`` or
        ``backbone`` missing from the model's config (no need to build a model to learn it has no neck)."""
        from featvis_run.recording.levels import missing_part
        from featvis_run.recording.select import parse_data_path

        for level, mapping in self.mappings.items():
            parse_data_path(mapping.data_idx, f"mapping {level!r} (recorder {mapping.recorder!r})")
        check_recorders(self.plan, self.recorders)
        model_cfg = self.plan.cfg.model
        for name, spec in self.recorders.items():
            if spec.level_prefix and spec.source in ("neck", "backbone") and not model_cfg.get(spec.source):
                top = [k for k, v in model_cfg.items() if isinstance(v, dict) and "type" in v]
                detr = "DETR" in str(model_cfg.get("type", "")).upper() or "DINO" in str(model_cfg.get("type", ""))
                raise RecordingError(missing_part(name, spec.source, str(model_cfg.get("type")), top, detr))

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
        """Each image's maps, predictions and geometry; cache misses run through the model as one batch."""
        started = time.perf_counter()
        keys = [self.cache.key(self.plan.identity, im.sha256, self._spec(im)) for im in images]
        found: list[ImageFeatures | None] = [
            self.cache.get(k, str(im.path)) for k, im in zip(keys, images, strict=True)
        ]
        self.timer.add("cache_read", started)
        missing = [i for i, item in enumerate(found) if item is None]
        if missing:
            arrays, boxes = [images[i].array for i in missing], [images[i].box for i in missing]
            computed = self._forward(arrays, boxes) if any(b is not None for b in boxes) else self._forward(arrays)
            started = time.perf_counter()
            for i, item in zip(missing, computed, strict=True):
                found[i] = self.cache.quantize(item)  # as the cache holds it: a later hit draws the same
                self.cache.put(keys[i], found[i], images[i].sha256)
            self.timer.add("cache_write", started)
        items = [f for f in found if f is not None]
        known = [f.predictions for f in items if f.predictions is not None]
        if known:
            self.classes = known[0].class_names
        return items

    def _spec(self, image: InputImage) -> dict:
        """What the cache key holds besides the model and the image: the recorder spec, and a pose box."""
        return self.spec if image.box is None else {**self.spec, "box": [float(v) for v in image.box]}

    def _forward(
        self, arrays: Sequence[np.ndarray], boxes: Sequence[Sequence[float] | None] | None = None
    ) -> list[ImageFeatures]:
        """Record the images in as few forward passes as the model allows (one, unless sizes must match)."""
        built = self.model()
        boxes = list(boxes) if boxes is not None else [None] * len(arrays)
        out: list[ImageFeatures | None] = [None] * len(arrays)
        for group in batch_groups(self.plan, arrays):
            items = self._forward_pass(built, [arrays[i] for i in group], [boxes[i] for i in group])
            for i, item in zip(group, items, strict=True):
                out[i] = item
        return [item for item in out if item is not None]

    def _forward_pass(
        self, built: BuiltModel, arrays: Sequence[np.ndarray], boxes: Sequence[Sequence[float] | None]
    ) -> list[ImageFeatures]:
        started = time.perf_counter()
        items = record_batch(built, arrays, self.recorders, self.mappings, boxes)
        self.forward_passes += 1
        self.timer.add("forward", started)
        return items

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
        """The loud notes about the weights (random init, a partial checkpoint accepted, non-finite weights) and
        what the adapter changed in the config."""
        adjusted = list(self.plan.notes) + self.recorder_notes
        if not self.random_init:
            ck = self._checkpoint()
            return (list(ck.notes) if ck is not None else []) + adjusted
        random_init = (
            f"RANDOM INIT: {self.name} has no checkpoint ({self.key}.checkpoint=null), weights are random (seed "
            f"{self.plan.config.seed}); maps show an untrained network. Pass {self.key}.checkpoint=/path/to/weights.pth"
        )
        return [random_init, *adjusted]
