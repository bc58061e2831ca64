"""The mmsegmentation 1.x adapter: resize-only test pipeline, whole-image inference, one forward pass per image
size, and a class per pixel as the prediction.

Differences from mmdet it handles: the test pipeline's ``LoadAnnotations`` needs a label file (dropped); the network
input is the resized image (no padding unless the data preprocessor's ``test_cfg`` asks for it, then
``padding_size`` says where); images of different sizes cannot share a batch; ``slide`` inference runs the backbone
once per window, so recording uses ``whole`` inference (one pass over the whole resized image; the predicted map can
differ slightly from slide inference's, and the summary says so).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from featvis_run.errors import FeatvisError
from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import BuiltModel, ImageResult, PredictionFailed
from featvis_run.models.openmmlab import OpenMMLabAdapter
from featvis_run.predictions import SegmentationMap

__all__ = ["MmsegAdapter"]


class MmsegAdapter(OpenMMLabAdapter):
    """mmsegmentation 1.x segmentors (EncoderDecoder and CascadeEncoderDecoder)."""

    repo = "mmseg"
    example_config = "segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py"

    def adjust_config(self, cfg: Any) -> list[str]:
        test_cfg = cfg.model.get("test_cfg") or {}
        if test_cfg.get("mode", "whole") != "whole":
            cfg.model.test_cfg = {**test_cfg, "mode": "whole"}
            return [
                f"the config's test_cfg.mode={test_cfg.get('mode')!r} (one backbone pass per window) was replaced by "
                "whole-image inference, so each map covers the whole image; predictions can differ slightly"
            ]
        return []

    def test_pipeline_cfg(self, cfg: Any, test_scale: Sequence[int] | None) -> list[dict[str, Any]]:
        pipeline = cfg.get("test_dataloader", {}).get("dataset", {}).get("pipeline") or cfg.get("test_pipeline", [])
        steps = [dict(s) for s in pipeline if "Annotation" not in str(s.get("type", ""))]
        for step in steps:
            kind = str(step.get("type", "")).rsplit(".", 1)[-1]
            if kind == "LoadImageFromFile":
                step["type"] = "mmseg.LoadImageFromNDArray"
            if test_scale is not None and kind.endswith("Resize") and "scale" in step:
                step["scale"] = tuple(int(v) for v in test_scale)
        return steps

    def _dataset_meta(self, cfg: Any) -> dict[str, Any]:
        from mmseg.registry import DATASETS

        dataset = cfg.get("test_dataloader", {}).get("dataset", {})
        meta = dict(dataset.get("metainfo") or {})
        try:
            with self.scope():
                cls = DATASETS.get(str(dataset.get("type", "")))
            meta = {**dict(getattr(cls, "METAINFO", {}) or {}), **meta}
        except Exception:  # an unknown dataset type: names and colours are generated
            pass
        return meta

    def config_classes(self, cfg: Any) -> tuple[str, ...]:
        classes = self._dataset_meta(cfg).get("classes")
        if classes:
            return tuple(classes)
        count = int(cfg.model.get("decode_head", {}).get("num_classes", 0) or 0)
        return tuple(f"class {i}" for i in range(count))

    def config_palette(self, cfg: Any) -> Any:
        palette = self._dataset_meta(cfg).get("palette")
        return [list(map(int, c)) for c in palette] if palette else None

    def batch_groups(self, images: Sequence[np.ndarray]) -> list[list[int]]:
        """Images of one size share a pass (same size in, same resized size out); others go one size at a time."""
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(tuple(img.shape[:2]), []).append(i)
        return list(groups.values())

    def run_batch(self, built: BuiltModel, images: Sequence[np.ndarray]) -> list[ImageResult]:
        import torch

        with self.scope():
            datas = [built.pipeline(dict(img=img)) for img in images]
            batch = dict(inputs=[d["inputs"] for d in datas], data_samples=[d["data_samples"] for d in datas])
            with torch.no_grad():
                data = built.model.data_preprocessor(batch, False)
                input_hw = tuple(int(v) for v in data["inputs"].shape[-2:])
                geometries = [_geometry(sample.metainfo, input_hw) for sample in data["data_samples"]]
                try:
                    samples = built.model._run_forward(data, mode="predict")
                except FeatvisError:
                    raise
                except Exception as err:
                    raise PredictionFailed(geometries, err) from err
        palette = np.asarray(built.palette if built.palette is not None else np.zeros((0, 3)), np.uint8)
        results = []
        for geometry, sample in zip(geometries, samples, strict=True):
            labels = sample.pred_sem_seg.data.detach().cpu().numpy().reshape(sample.pred_sem_seg.shape)
            results.append(ImageResult(geometry, SegmentationMap(labels.astype(np.int32), built.classes, palette)))
        return results


def _geometry(meta: dict[str, Any], input_hw: tuple[int, int]) -> Geometry:
    """The resized image at the top-left of the input, unless the preprocessor padded it around (``padding_size``
    is [left, right, top, bottom])."""
    ori = tuple(int(v) for v in meta["ori_shape"][:2])
    img = tuple(int(v) for v in meta["img_shape"][:2])
    left, _, top, _ = (int(v) for v in (meta.get("padding_size") or (0, 0, 0, 0)))
    return Geometry(ori, img, input_hw, (top, left))
