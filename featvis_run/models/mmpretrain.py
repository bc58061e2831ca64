"""The mmpretrain 1.x adapter (classifiers): the test pipeline replayed step by step to learn its geometry (a
short-edge resize and a centre crop, or EfficientNet's crop-then-resize), the top classes as the prediction, the
backbone's stages as ``recorder=backbone``, and class logits for Grad-CAM.

mmpretrain backbones return only their last stage (ResNet ``out_indices=(3,)``) or a pooled vector (ConvNeXt's
``gap_before_final_norm``, a ViT's class token), so ``recorder=backbone`` records the stages themselves
(:class:`~featvis_run.schema.RecorderType` ``stage_outputs``), leaving the config, and so the predictions, as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import BuiltModel, ExplainedBatch, ImageResult
from featvis_run.models.openmmlab import OpenMMLabAdapter, predict
from featvis_run.predictions import Classification
from featvis_run.schema import RecorderSpec, RecorderType

__all__ = ["MmpretrainAdapter", "PipelineTrack", "top_classes"]

TOP_K = 5


@dataclasses.dataclass
class PipelineTrack:
    """Where original pixels land as a test pipeline runs: x_now = sx * x + ox (y likewise), continuous pixel
    coordinates. Pure; :meth:`step` is told each transform's name and the image size before and after."""

    ori_hw: tuple[int, int]
    sx: float = 1.0
    sy: float = 1.0
    ox: float = 0.0
    oy: float = 0.0
    crop_padding: int | None = None  # set by the caller for EfficientNetCenterCrop

    def step(self, name: str, before: tuple[int, int], after: tuple[int, int]) -> None:
        """Account for one transform: a centre crop (mmcv's rounding), EfficientNet's centre crop then resize, a
        pad (bottom and right: nothing moves), or else a resize of the whole image."""
        (h0, w0), (h1, w1) = before, after
        if (h0, w0) == (h1, w1):
            return
        if name == "EfficientNetCenterCrop" and self.crop_padding is not None:
            size = h1 / (h1 + self.crop_padding) * min(h0, w0)  # the square cut from the image, then resized
            top, left = max(0, int(round((h0 - size) / 2.0))), max(0, int(round((w0 - size) / 2.0)))
            cut_h, cut_w = int(top + size - 1) - top + 1, int(left + size - 1) - left + 1
            self._move(-left, -top)
            self._scale(w1 / min(cut_w, w0 - left), h1 / min(cut_h, h0 - top))
        elif "Crop" in name:
            self._move(-max(0, int(round((w0 - w1) / 2.0))), -max(0, int(round((h0 - h1) / 2.0))))
        elif "Pad" not in name:
            self._scale(w1 / w0, h1 / h0)

    def _move(self, dx: float, dy: float) -> None:
        self.ox, self.oy = self.ox + dx, self.oy + dy

    def _scale(self, fx: float, fy: float) -> None:
        self.sx, self.sy, self.ox, self.oy = self.sx * fx, self.sy * fy, self.ox * fx, self.oy * fy

    def geometry(self, input_hw: tuple[int, int]) -> Geometry:
        """The geometry: a resize (to ``img_hw``) placed at an integer offset when that is what happened, else the
        affine (EfficientNet's crop of a non-integer size)."""
        (oh, ow), (ih, iw) = self.ori_hw, (round(self.ori_hw[0] * self.sy), round(self.ori_hw[1] * self.sx))
        exact = abs(ih - oh * self.sy) < 1e-6 and abs(iw - ow * self.sx) < 1e-6
        if exact and abs(self.ox - round(self.ox)) < 1e-6 and abs(self.oy - round(self.oy)) < 1e-6:
            return Geometry(self.ori_hw, (ih, iw), input_hw, (round(self.oy), round(self.ox)))
        affine = ((self.sx, 0.0, self.ox), (0.0, self.sy, self.oy))
        return Geometry(self.ori_hw, input_hw, input_hw, (0, 0), affine)


def top_classes(scores: np.ndarray, class_names: tuple[str, ...], k: int = TOP_K) -> Classification:
    """The ``k`` best classes of one image's (K,) scores, best first (ties: the lower index)."""
    scores = np.asarray(scores, np.float32).reshape(-1)
    order = np.argsort(-scores, kind="stable")[: min(k, len(scores))]
    return Classification(order.astype(np.int64), scores[order], class_names)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class MmpretrainAdapter(OpenMMLabAdapter):
    """mmpretrain 1.x image classifiers (``ImageClassifier`` and the like)."""

    repo = "mmpretrain"
    example_config = "resnet/resnet50_8xb32_in1k.py"

    def test_pipeline_cfg(self, cfg: Any, test_scale: Sequence[int] | None) -> list[dict[str, Any]]:
        """The test pipeline without its image loader (images come in memory, as mmpretrain's inferencer does)."""
        pipeline = cfg.get("test_dataloader", {}).get("dataset", {}).get("pipeline") or cfg.get("test_pipeline", [])
        return [dict(s) for s in pipeline if str(s.get("type", "")).rsplit(".", 1)[-1] != "LoadImageFromFile"]

    def adapt_recorders(self, recorders: dict[str, RecorderSpec]) -> dict[str, RecorderSpec]:
        """``recorder=backbone`` records the backbone's stages (its output is only the last one, or a vector)."""
        return {
            name: dataclasses.replace(spec, type=RecorderType.stage_outputs)
            if spec.type is RecorderType.module_outputs and spec.source == "backbone" and spec.level_prefix
            else spec
            for name, spec in recorders.items()
        }

    def config_classes(self, cfg: Any) -> tuple[str, ...]:
        dataset = cfg.get("test_dataloader", {}).get("dataset", {})
        classes = (dataset.get("metainfo") or {}).get("classes")
        if not classes:
            from mmpretrain.registry import DATASETS

            try:
                with self.scope():
                    kind = DATASETS.get(str(dataset.get("type", "")))
                classes = dict(getattr(kind, "METAINFO", {}) or {}).get("classes")
            except Exception:  # an unknown dataset type: names are generated
                classes = None
        if classes:
            return tuple(str(c) for c in classes)
        head = cfg.model.get("head") or {}
        return tuple(f"class {i}" for i in range(int(head.get("num_classes", 0) or 0)))

    def _prepare(self, built: BuiltModel, images: Sequence[np.ndarray]) -> tuple[dict[str, Any], list[Geometry]]:
        """Run the pipeline image by image, tracking each one's geometry, and the data preprocessor on the batch."""
        import torch

        datas, tracks = [], []
        for img in images:
            results: Any = dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])
            track = PipelineTrack(tuple(int(v) for v in img.shape[:2]))
            for transform in built.pipeline.transforms:
                before = tuple(results["img"].shape[:2]) if "img" in results else None
                track.crop_padding = getattr(transform, "crop_padding", None)
                results = transform(results)
                if before is not None and isinstance(results, dict) and "img" in results:
                    track.step(type(transform).__name__, before, tuple(results["img"].shape[:2]))
            datas.append(results)
            tracks.append(track)
        batch = dict(inputs=[d["inputs"] for d in datas], data_samples=[d["data_samples"] for d in datas])
        with torch.no_grad():
            data = built.model.data_preprocessor(batch, False)
        input_hw = tuple(int(v) for v in data["inputs"].shape[-2:])
        return data, [t.geometry(input_hw) for t in tracks]

    def run_batch(self, built: BuiltModel, images: Sequence[np.ndarray]) -> list[ImageResult]:
        import torch

        with self.scope():
            data, geometries = self._prepare(built, images)
            with torch.no_grad():
                samples = predict(built.model, data, geometries)
        results = []
        for geometry, sample in zip(geometries, samples, strict=True):
            score = sample.get("pred_score") if hasattr(sample, "get") else None
            if score is None:
                results.append(ImageResult(geometry, None, ("the model predicts no class scores; maps drawn alone",)))
                continue
            scores = score.detach().float().cpu().numpy().reshape(-1)
            results.append(ImageResult(geometry, top_classes(scores, built.classes)))
        return results

    def explain_batch(
        self, built: BuiltModel, images: Sequence[np.ndarray], target: Any, score_thr: float
    ) -> ExplainedBatch:
        """The batch with gradients on: each image's logits (the head's output before softmax), the class ``target``
        explains, and the sum of those logits over the batch."""
        import torch

        from featvis_run.maps.targets import select_class

        with self.scope():
            data, geometries = self._prepare(built, images)
            logits = built.model.head(built.model.extract_feat(data["inputs"]))
        if isinstance(logits, (tuple, list)):  # heads with several outputs (Conformer): their sum, as they predict
            logits = torch.stack(list(logits)).sum(dim=0)
        values = logits.detach().float().cpu().numpy().reshape(len(images), -1)
        results, picked = [], []
        for i, geometry in enumerate(geometries):
            index = select_class(target, values[i], built.classes)
            top = top_classes(_softmax(values[i].astype(np.float64)), built.classes)
            results.append(ImageResult(geometry, dataclasses.replace(top, explained=(index,))))
            picked.append(logits[i].reshape(-1)[index])
        return ExplainedBatch(results, torch.stack(picked).sum())
