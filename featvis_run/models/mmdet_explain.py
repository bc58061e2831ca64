"""The logits behind an mmdet detector's kept detections, with a graph back to its feature maps (for Grad-CAM).

mmdet's heads detach their scores when they post-process (``predict_by_feat``), so the predictions carry no
gradient. The model's own predict path runs with gradients on instead, and each kept detection is traced back to
the logit it came from:

- dense heads that post-process through ``filter_scores_and_topk`` and ``_bbox_post_process`` (RetinaNet, FCOS,
  ATSS, GFL, RTMDet, SSD, ...): the head's forward outputs are kept with their graph; the ``filter_scores_and_topk``
  calls are recorded (each candidate's level, position, anchor and class); ``_bbox_post_process`` gets an index
  field, which its size filter, NMS and ``max_per_img`` cut carry along. A detection's logit is then
  ``cls_score[level][image, anchor * classes + class, y, x]``. YOLOX filters its candidates itself: that filter is
  recomputed with the same operations.
- two-stage detectors with a ``StandardRoIHead`` (Faster R-CNN, Mask R-CNN): the RoI head's class logits are kept
  and ``multiclass_nms`` reports the (RoI, class) of each detection it keeps; the graph reaches the neck maps
  through RoIAlign. Proposals are constants (mmdet detaches them).

Anything else gets one line naming what is supported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from featvis_run.errors import ModelError

__all__ = ["DetectionLogits", "detection_logits"]

_SUPPORTED = (
    "reducer=gradcam supports dense-head detectors that post-process with filter_scores_and_topk (RetinaNet, FCOS, "
    "ATSS, GFL, RTMDet, SSD, ...), YOLOX, and two-stage detectors with a StandardRoIHead (Faster/Mask R-CNN)"
)


@dataclass
class DetectionLogits:
    """One image's kept detections (original pixels) and the logit behind each, as a (N,) tensor with a graph."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    logits: torch.Tensor


@contextlib.contextmanager
def _patched(namespace: dict[str, Any], name: str, wrapper: Callable[..., Any]) -> Iterator[None]:
    """``namespace[name]`` (a module's globals) replaced by ``wrapper`` for the duration."""
    original = namespace[name]
    namespace[name] = wrapper
    try:
        yield
    finally:
        namespace[name] = original


@contextlib.contextmanager
def _instance_attr(obj: Any, name: str, value: Any) -> Iterator[None]:
    """``obj.name`` set on the instance for the duration (methods of one module, not its class)."""
    object.__setattr__(obj, name, value)
    try:
        yield
    finally:
        object.__delattr__(obj, name)


def _globals_of(cls: type, method: str, name: str, arch: str) -> dict[str, Any]:
    namespace = getattr(getattr(cls, method, None), "__globals__", {})
    if name not in namespace:
        raise ModelError(f"{_SUPPORTED}; {arch} post-processes its detections otherwise ({cls.__name__}.{method})")
    return namespace


def _yolox_candidates(outs: Any, image: int, score_thr: float) -> tuple[torch.Tensor, ...]:
    """(level, position, class) of the candidates YOLOX's ``predict_by_feat`` passes to ``_bbox_post_process``:
    the positions (all levels flattened) where sigmoid(objectness) * max sigmoid(class) >= ``score_thr``, recomputed
    with the same operations, so the same ones."""
    cls_scores, _, objectness = outs
    flat_cls = torch.cat([c[image].detach().permute(1, 2, 0).reshape(-1, c.shape[1]) for c in cls_scores]).sigmoid()
    flat_obj = torch.cat([o[image].detach().permute(1, 2, 0).reshape(-1) for o in objectness]).sigmoid()
    max_scores, labels = torch.max(flat_cls, 1)
    valid = torch.nonzero(flat_obj * max_scores >= score_thr).squeeze(1)
    sizes = torch.tensor([c.shape[-2] * c.shape[-1] for c in cls_scores], device=valid.device)
    starts = torch.cumsum(sizes, 0) - sizes
    level = torch.repeat_interleave(torch.arange(len(sizes), device=valid.device), sizes)[valid]
    return level, valid - starts[level], labels[valid]


def _dense(model: Any, data: dict[str, Any]) -> tuple[list[Any], list[torch.Tensor]]:
    """Run a single-stage detector; returns its samples and each image's (N,) detection logits."""
    head = model.bbox_head
    arch = type(model).__name__
    namespace = _globals_of(type(head), "_predict_by_feat_single", "filter_scores_and_topk", arch)
    original_filter, original_post, original_forward = (
        namespace["filter_scores_and_topk"],
        head._bbox_post_process,
        head.forward,
    )
    outs: list[Any] = []
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []
    per_image: list[tuple[list[tuple[torch.Tensor, torch.Tensor]], Any, torch.Tensor]] = []

    def forward(*args: Any, **kwargs: Any) -> Any:
        out = original_forward(*args, **kwargs)
        outs.append(out)
        return out

    def filter_scores_and_topk(*args: Any, **kwargs: Any) -> Any:
        result = original_filter(*args, **kwargs)
        pending.append((result[2], result[1]))  # keep_idxs (position * anchors + anchor), labels
        return result

    def post_process(results: Any, *args: Any, **kwargs: Any) -> Any:
        results.featvis_source = torch.arange(len(results), device=results.scores.device)
        out = original_post(results, *args, **kwargs)
        cfg = kwargs.get("cfg", args[0] if args else None) or head.test_cfg
        per_image.append((list(pending), cfg, out.pop("featvis_source")))
        pending.clear()
        return out

    with (
        _patched(namespace, "filter_scores_and_topk", filter_scores_and_topk),
        _instance_attr(head, "_bbox_post_process", post_process),
        _instance_attr(head, "forward", forward),
    ):
        samples = model(**data, mode="predict")
    if len(outs) != 1 or len(per_image) != len(samples):
        raise ModelError(f"{_SUPPORTED}; {arch}'s head ({type(head).__name__}) did not run its post-processing once")
    cls_scores = outs[0][0]
    classes = int(head.cls_out_channels)
    logits = []
    for i, (calls, cfg, source) in enumerate(per_image):
        if not calls and type(head).__name__ == "YOLOXHead":
            level, flat, label = _yolox_candidates(outs[0], i, float(cfg.score_thr))
        elif len(calls) == len(cls_scores):
            level = torch.cat([torch.full_like(idx, lvl) for lvl, (idx, _) in enumerate(calls)])
            flat, label = torch.cat([idx for idx, _ in calls]), torch.cat([lab for _, lab in calls])
        else:
            raise ModelError(
                f"{_SUPPORTED}; {type(head).__name__} does not post-process through filter_scores_and_topk "
                f"({len(calls)} of {len(cls_scores)} levels)"
            )
        level, flat, label = level[source], flat[source], label[source]
        picked = []
        for lvl, k, c in zip(level.tolist(), flat.tolist(), label.tolist(), strict=True):
            score_map = cls_scores[lvl]
            anchors = score_map.shape[1] // classes
            width = score_map.shape[-1]
            position, anchor = divmod(k, anchors)
            y, x = divmod(position, width)
            picked.append(score_map[i, anchor * classes + c, y, x])
        logits.append(torch.stack(picked) if picked else cls_scores[0].new_zeros(0))
    return samples, logits


def _two_stage(model: Any, data: dict[str, Any]) -> tuple[list[Any], list[torch.Tensor]]:
    """Run a two-stage detector; returns its samples and each image's (N,) detection logits (RoI head)."""
    from mmdet.models.roi_heads import StandardRoIHead

    roi_head, arch = model.roi_head, type(model).__name__
    if not isinstance(roi_head, StandardRoIHead) or type(roi_head).predict_bbox is not StandardRoIHead.predict_bbox:
        raise ModelError(f"{_SUPPORTED}; {arch}'s RoI head is a {type(roi_head).__name__}")
    namespace = _globals_of(type(roi_head.bbox_head), "_predict_by_feat_single", "multiclass_nms", arch)
    original_nms, original_forward = namespace["multiclass_nms"], roi_head._bbox_forward
    forwards: list[tuple[torch.Tensor, torch.Tensor]] = []
    kept: list[torch.Tensor] = []

    def bbox_forward(x: Any, rois: torch.Tensor) -> Any:
        out = original_forward(x, rois)
        forwards.append((rois, out["cls_score"]))
        return out

    def multiclass_nms(*args: Any, **kwargs: Any) -> Any:
        dets, labels, inds = original_nms(*args, **{**kwargs, "return_inds": True})
        kept.append(inds)
        return dets, labels

    with _patched(namespace, "multiclass_nms", multiclass_nms), _instance_attr(roi_head, "_bbox_forward", bbox_forward):
        samples = model(**data, mode="predict")
    if not forwards:  # no proposals at all: nothing was detected
        return samples, [torch.zeros(0) for _ in samples]
    if len(forwards) != 1 or len(kept) != len(samples):
        raise ModelError(f"{_SUPPORTED}; {arch}'s RoI head did not score its boxes once per image")
    rois, cls_score = forwards[0]
    classes = cls_score.shape[1] - 1
    logits = []
    for i, inds in enumerate(kept):
        offset = int((rois[:, 0] < i).sum())
        roi, label = inds // classes, inds % classes
        logits.append(cls_score[offset + roi, label])
    return samples, logits


def detection_logits(model: Any, data: dict[str, Any]) -> list[DetectionLogits]:
    """Run a preprocessed batch through ``model``'s predict path with gradients on; each image's detections and
    the logit of each (a ModelError for an architecture this cannot trace)."""
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead

    data = {**data, "inputs": data["inputs"].detach().requires_grad_(True)}  # a graph even through frozen stages
    with torch.enable_grad():
        if getattr(model, "with_rpn", False) and getattr(model, "roi_head", None) is not None:
            samples, logits = _two_stage(model, data)
        elif isinstance(getattr(model, "bbox_head", None), BaseDenseHead) and not hasattr(model, "encoder"):
            samples, logits = _dense(model, data)
        else:
            raise ModelError(f"{_SUPPORTED}; {type(model).__name__} is neither")
    out = []
    for sample, logit in zip(samples, logits, strict=True):
        pred = sample.pred_instances
        boxes = pred.bboxes.detach().float().cpu().numpy().reshape(-1, 4)
        scores = pred.scores.detach().float().cpu().numpy().reshape(-1)
        labels = pred.labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
        if len(logit) != len(scores):
            raise ModelError(f"{_SUPPORTED}; {type(model).__name__}: {len(scores)} detections, {len(logit)} traced")
        out.append(DetectionLogits(boxes, scores, labels, logit))
    return out
