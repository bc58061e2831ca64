"""The mmdet 3.x adapter: test pipeline, class names, and a batch through ``test_step`` with its geometry
(resize and padding) and detections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from featvis_run.errors import ModelError
from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import BuiltModel, ExplainedBatch, ImageResult
from featvis_run.models.openmmlab import OpenMMLabAdapter, predict
from featvis_run.predictions import Detections

__all__ = ["MmdetAdapter"]


class MmdetAdapter(OpenMMLabAdapter):
    """mmdet 3.x detectors."""

    repo = "mmdet"
    example_config = "retinanet/retinanet_r50_fpn_2x_coco.py"

    def test_pipeline_cfg(self, cfg: Any, test_scale: Sequence[int] | None) -> list[dict[str, Any]]:
        # annotation loaders (LoadAnnotations, LoadPanopticAnnotations, ...) need files an image run has not got
        steps = [dict(s) for s in _test_pipeline(cfg.test_dataloader.dataset) if not _is_annotation_loader(s)]
        for step in steps:
            kind = str(step.get("type", "")).rsplit(".", 1)[-1]
            if kind == "LoadImageFromFile":
                step["type"] = "mmdet.LoadImageFromNDArray"
            if test_scale is None:
                continue
            if kind.endswith("Resize") and "scale" in step:
                step["scale"] = tuple(int(v) for v in test_scale)
            elif kind == "Pad" and step.get("size") is not None:  # a fixed pad (YOLO-style) follows the new scale
                side = max(int(v) for v in test_scale)
                step["size"] = (side, side)
        return steps

    def prepare(self, model: Any) -> None:
        """Work around mmdet 3.3's ``SSDHead``, which has no ``loss_cls`` attribute although ``predict_by_feat``
        reads it (``'SSDHead' object has no attribute 'loss_cls'``): a dense head without one gets ``None``."""
        from mmdet.models.dense_heads.base_dense_head import BaseDenseHead

        for module in model.modules():
            if isinstance(module, BaseDenseHead) and "loss_cls" not in dir(module):
                module.loss_cls = None

    def config_classes(self, cfg: Any) -> tuple[str, ...]:
        meta = cfg.get("test_dataloader", {}).get("dataset", {}).get("metainfo") or {}
        if meta.get("classes"):
            return tuple(meta["classes"])
        from mmdet.evaluation import get_classes

        return tuple(get_classes("coco"))

    def run_batch(self, built: BuiltModel, images: Sequence[np.ndarray]) -> list[ImageResult]:
        import torch

        with self.scope():
            datas = [built.pipeline(dict(img=img, img_id=i)) for i, img in enumerate(images)]
            batch = dict(inputs=[d["inputs"] for d in datas], data_samples=[d["data_samples"] for d in datas])
            with torch.no_grad():
                data = built.model.data_preprocessor(batch, False)  # what test_step does first
                geometries = [_geometry(sample.metainfo) for sample in data["data_samples"]]
                samples = predict(built.model, data, geometries)
        return [_result(g, sample, built.classes) for g, sample in zip(geometries, samples, strict=True)]

    def explain_batch(
        self, built: BuiltModel, images: Sequence[np.ndarray], target: Any, score_thr: float
    ) -> ExplainedBatch:
        """The batch with gradients on: each image's geometry and the detections ``target`` (a
        :class:`~featvis_run.maps.targets.Target`) explains, and the sum of their logits (see
        :mod:`featvis_run.models.mmdet_explain`)."""
        import torch

        from featvis_run.maps.targets import check_class, select_detections
        from featvis_run.models.mmdet_explain import detection_logits

        check_class(target, built.classes)
        with self.scope():
            datas = [built.pipeline(dict(img=img, img_id=i)) for i, img in enumerate(images)]
            batch = dict(inputs=[d["inputs"] for d in datas], data_samples=[d["data_samples"] for d in datas])
            with torch.no_grad():
                data = built.model.data_preprocessor(batch, False)
            geometries = [_geometry(sample.metainfo) for sample in data["data_samples"]]
            found = detection_logits(built.model, data)
        results, picked = [], []
        for geometry, det in zip(geometries, found, strict=True):
            random_init = built.plan.key if built.plan.checkpoint_path is None else None
            keep = select_detections(target, det.scores, det.labels, built.classes, score_thr, random_init)
            dets = Detections(det.boxes[keep], det.scores[keep], det.labels[keep], built.classes)
            results.append(ImageResult(geometry, dets))
            picked.append(det.logits[torch.as_tensor(keep, dtype=torch.long)].sum())
        return ExplainedBatch(results, torch.stack(picked).sum())


def _test_pipeline(dataset: Any) -> Any:
    """The pipeline of a test dataset config, through dataset wrappers (as mmdet's ``get_test_pipeline_cfg``,
    without importing mmdet: planning a model whose features are cached never loads torch)."""
    if "pipeline" in dataset:
        return dataset["pipeline"]
    if "dataset" in dataset:
        return _test_pipeline(dataset["dataset"])
    if "datasets" in dataset:
        return _test_pipeline(dataset["datasets"][0])
    raise ModelError("the config's test_dataloader.dataset has no pipeline")


def _is_annotation_loader(step: Any) -> bool:
    kind = str(step.get("type", "")).rsplit(".", 1)[-1]
    return kind.startswith("Load") and "Annotation" in kind


def _geometry(meta: dict[str, Any]) -> Geometry:
    """Where the resized image lies in the network input. ``img_shape`` alone is not enough: a pipeline ``Pad``
    (YOLOX, RTMDet) rewrites it to the padded size, so the content is ``ori_shape * scale_factor`` ((w, h) order);
    ``RandomCenterCropPad`` (CenterNet, CornerNet) centres the unscaled image at ``border`` = [top, bottom, left,
    right] and sets no scale factor."""
    ori = tuple(int(v) for v in meta["ori_shape"][:2])
    img = tuple(int(v) for v in meta["img_shape"][:2])
    offset = (0, 0)
    if "scale_factor" in meta:
        sf_w, sf_h = (float(v) for v in meta["scale_factor"][:2])
        img = (min(img[0], round(ori[0] * sf_h)), min(img[1], round(ori[1] * sf_w)))
    elif meta.get("border") is not None:
        top, bottom, left, right = (int(v) for v in meta["border"][:4])
        img, offset = (bottom - top, right - left), (top, left)
    return Geometry(ori, img, tuple(int(v) for v in meta["batch_input_shape"][:2]), offset)


def _result(geometry: Geometry, sample: Any, classes: tuple[str, ...]) -> ImageResult:
    """Detections in original-image pixels; boxes or scores that are not finite (random heads) are dropped."""
    pred = sample.get("pred_instances")
    if pred is None or "bboxes" not in pred:  # e.g. Panoptic FPN predicts segments only
        empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), classes)
        return ImageResult(geometry, empty, ("the model predicts no boxes; maps drawn without them",))
    boxes = pred.bboxes.detach().float().cpu().numpy().reshape(-1, 4)
    scores = pred.scores.detach().float().cpu().numpy().reshape(-1)
    labels = pred.labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
    keep = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
    notes = ()
    if not keep.all():
        notes = (f"{int((~keep).sum())} of {len(keep)} detections had non-finite boxes or scores and were dropped",)
    dets = Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32), labels[keep], classes)
    return ImageResult(geometry, dets, notes)
