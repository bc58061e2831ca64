"""The mmdet 3.x adapter: test pipeline, class names, and a batch through ``test_step`` with its geometry
(resize and padding) and detections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import BuiltModel, ImageResult
from featvis_run.models.openmmlab import OpenMMLabAdapter
from featvis_run.predictions import Detections

__all__ = ["MmdetAdapter"]


class MmdetAdapter(OpenMMLabAdapter):
    """mmdet 3.x detectors."""

    repo = "mmdet"
    example_config = "retinanet/retinanet_r50_fpn_2x_coco.py"

    def test_pipeline_cfg(self, cfg: Any, test_scale: Sequence[int] | None) -> list[dict[str, Any]]:
        from mmdet.utils import get_test_pipeline_cfg

        steps = [dict(s) for s in get_test_pipeline_cfg(cfg)]
        for step in steps:
            if "LoadImageFromFile" in str(step.get("type")):
                step["type"] = "mmdet.LoadImageFromNDArray"
            if test_scale is not None and str(step.get("type")).endswith("Resize") and "scale" in step:
                step["scale"] = tuple(int(v) for v in test_scale)
        return steps

    def config_classes(self, cfg: Any) -> tuple[str, ...]:
        meta = cfg.get("test_dataloader", {}).get("dataset", {}).get("metainfo") or {}
        if meta.get("classes"):
            return tuple(meta["classes"])
        from mmdet.evaluation import get_classes

        return tuple(get_classes("coco"))

    def run_batch(self, built: BuiltModel, images: Sequence[np.ndarray]) -> list[ImageResult]:
        with self.scope():
            datas = [built.pipeline(dict(img=img, img_id=i)) for i, img in enumerate(images)]
            batch = dict(inputs=[d["inputs"] for d in datas], data_samples=[d["data_samples"] for d in datas])
            with torch.no_grad():
                samples = built.model.test_step(batch)
        results = []
        for sample in samples:
            meta = sample.metainfo
            geom = Geometry(
                ori_hw=tuple(int(v) for v in meta["ori_shape"][:2]),
                img_hw=tuple(int(v) for v in meta["img_shape"][:2]),
                input_hw=tuple(int(v) for v in meta["batch_input_shape"][:2]),
            )
            pred = sample.pred_instances
            dets = Detections(
                boxes=pred.bboxes.detach().cpu().numpy().astype(np.float32),
                scores=pred.scores.detach().cpu().numpy().astype(np.float32),
                labels=pred.labels.detach().cpu().numpy().astype(np.int64),
                class_names=built.classes,
            )
            results.append(ImageResult(geom, dets))
        return results
