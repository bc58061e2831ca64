"""The mmpose 1.x adapter: top-down pose models, one person box per picture, the box warped onto the network input.

A top-down model (``TopdownPoseEstimator``) sees one box of the image: the test pipeline pads the box (x1.25), widens
it to the input's aspect ratio and warps it onto the input with an affine (mmpose's ``get_warp_matrix``, or
``get_udp_warp_matrix`` for UDP configs). That affine is recorded as the geometry, so every map is drawn back onto the
original image through its inverse, and a heatmap peak lands on its keypoint. The box is the whole image unless
``model.bboxes`` gives boxes (then each image is drawn once per box).

Recording is done without flip test (mmpose averages a second, mirrored pass into the heatmaps it decodes): the
maps drawn are the ones the keypoints were decoded from, and each recorder sees one call per batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.errors import ModelError, RecordingError
from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import BuiltModel, ImageResult, ModelPlan
from featvis_run.models.openmmlab import OpenMMLabAdapter, predict
from featvis_run.predictions import Keypoints
from featvis_run.schema import RecorderSpec

__all__ = [
    "HEATMAP_HEADS",
    "MmposeAdapter",
    "PoseMeta",
    "check_boxes",
    "pixel_centre_affine",
    "read_pose_meta",
    "whole_image_box",
    "widen_stages",
]

#: mmpose heads whose forward returns (N, K, H, W) heatmaps (CPM and MSPN: one per stage; the last is decoded).
HEATMAP_HEADS = ("HeatmapHead", "ViPNASHead", "CPMHead", "MSPNHead")
_TOP_DOWN = "TopdownPoseEstimator"
_META: dict[str, PoseMeta] = {}  # keypoint names and skeleton by model identity (read once per process)


@dataclasses.dataclass(frozen=True)
class PoseMeta:
    """A pose dataset's keypoint names (by index) and skeleton (pairs of keypoint indices)."""

    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]


def read_pose_meta(cfg: Any) -> PoseMeta:
    """Keypoint names and skeleton from a config's dataset metainfo (mmpose's ``dataset_meta_from_config``: the test
    dataset's ``metainfo`` file, else its class's, e.g. ``coco.py``); names are generated when it has none."""
    from mmpose.apis.inference import dataset_meta_from_config

    try:
        meta = dataset_meta_from_config(cfg, "test") or {}
    except Exception:  # noqa: BLE001 - an unknown dataset type: names are generated
        meta = {}
    count = int(cfg.model.get("head", {}).get("out_channels", 0) or meta.get("num_keypoints", 0) or 0)
    id2name = meta.get("keypoint_id2name") or {}
    names = tuple(str(id2name.get(i, f"keypoint {i}")) for i in range(count or len(id2name)))
    links = tuple((int(i), int(j)) for i, j in meta.get("skeleton_links") or ())
    return PoseMeta(names, links)


def check_boxes(boxes: Any, key: str = "model") -> None:
    """``model.bboxes`` is null or a list of [x1, y1, x2, y2] boxes with x1 < x2 and y1 < y2 (finite numbers)."""
    if boxes is None:
        return
    example = f"{key}.bboxes=[[10,20,110,220]]"
    if len(boxes) == 0:
        raise ModelError(f"{key}.bboxes=[] gives no box; give [[x1,y1,x2,y2], ...] or null for the whole image")
    for i, box in enumerate(boxes):
        values = list(box) if isinstance(box, (list, tuple)) or hasattr(box, "__len__") else [box]
        ok = len(values) == 4 and all(isinstance(v, (int, float)) and np.isfinite(v) for v in values)
        if not ok or not (values[0] < values[2] and values[1] < values[3]):
            raise ModelError(
                f"{key}.bboxes[{i}]={values} is not a box [x1, y1, x2, y2] in pixels with x1 < x2 and y1 < y2; "
                f"e.g. {example}"
            )


def _stage_indices(backbone: Mapping[str, Any]) -> tuple[int, ...] | None:
    """Every stage's ``out_indices`` of the backbones that output only their last stage by default: the ResNet
    family (stages 0..num_stages-1) and CSPNeXt (1..4, 0 being its stem; 1..5 for arch P6)."""
    kind = str(backbone.get("type", "")).rsplit(".", 1)[-1]
    if kind in ("ResNet", "ResNetV1d", "ResNeXt", "SEResNet", "SEResNeXt"):
        return tuple(range(int(backbone.get("num_stages", 4))))
    if kind == "CSPNeXt":
        return tuple(range(1, 6 if backbone.get("arch", "P5") == "P6" else 5))
    return None


def widen_stages(model: Any) -> list[str]:
    """Make the backbone output every stage when it outputs only its last (ResNet ``out_indices=(3,)``), so that
    ``recorder=backbone`` draws each stage (c2..c5); the heads read the last output, which is unchanged. Returns the
    note saying so (none when nothing changed)."""
    backbone = model.get("backbone") or {}
    every = _stage_indices(backbone)
    if every is None:
        return []
    current = backbone.get("out_indices", every[-1:] if "ResN" in str(backbone.get("type", "")) else every)
    current = tuple(int(i) for i in (current if isinstance(current, (list, tuple)) else [current]))
    if len(current) != 1 or current[0] != every[-1]:
        return []
    backbone["out_indices"] = every
    return [
        f"the backbone's out_indices {current} were widened to {every} so that every stage is drawn; the head reads "
        "the last stage as before"
    ]


def whole_image_box(hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """The person box of a picture without ``model.bboxes``: the whole image, (x1, y1, x2, y2)."""
    return (0.0, 0.0, float(hw[1]), float(hw[0]))


def pixel_centre_affine(warp: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """An OpenCV warp matrix (pixel indices to pixel indices, as ``cv2.warpAffine`` uses it) as the geometry's
    affine, in coordinates where pixel i spans [i, i + 1): A = T(+0.5) M T(-0.5), so the linear part is kept and
    the translation becomes c + 0.5 - 0.5 (a + b)."""
    m = np.asarray(warp, np.float64).reshape(2, 3)
    rows = []
    for a, b, c in m:
        rows.append((float(a), float(b), float(c + 0.5 - 0.5 * (a + b))))
    return rows[0], rows[1]


class MmposeAdapter(OpenMMLabAdapter):
    """mmpose 1.x top-down pose models (heatmap heads draw with ``recorder=head``; any head's backbone draws)."""

    repo = "mmpose"
    takes_boxes = True
    example_config = "body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w32_8xb64-210e_coco-256x192.py"

    def adjust_config(self, cfg: Any) -> list[str]:
        kind = str(cfg.model.get("type", "")).rsplit(".", 1)[-1]
        if kind != _TOP_DOWN:
            raise ModelError(
                f"model.config={Path(str(cfg.filename)).name!r} is a {kind or 'model without a type'}, not a top-down "
                "pose model "
                f"({_TOP_DOWN}); featvis-run draws top-down models (one person box at a time): choose a topdown_* "
                "or rtmpose config"
            )
        notes = widen_stages(cfg.model)
        test_cfg = dict(cfg.model.get("test_cfg") or {})
        if test_cfg.get("flip_test"):
            cfg.model.test_cfg = {**test_cfg, "flip_test": False}
            notes.append(
                "the config's flip test (a second, mirrored pass averaged into the heatmaps) is off: the maps drawn "
                "are those the keypoints were decoded from; keypoints can differ slightly from mmpose's with it"
            )
        return notes

    def test_pipeline_cfg(self, cfg: Any, test_scale: Sequence[int] | None) -> list[dict[str, Any]]:
        dataset = cfg.get("test_dataloader", {}).get("dataset", {})
        pipeline = dataset.get("pipeline") or cfg.get("val_pipeline") or cfg.get("test_pipeline") or []
        steps = [dict(s) for s in pipeline if "Annotation" not in str(s.get("type", ""))]
        if not any(str(s.get("type", "")).endswith("TopdownAffine") for s in steps):
            raise ModelError(
                f"model.config={Path(str(cfg.filename)).name!r}: its test pipeline has no TopdownAffine step, so it "
                "is not a top-down pipeline featvis-run can place on the image"
            )
        return steps

    def pose_meta(self, plan: ModelPlan) -> PoseMeta:
        """Keypoint names and skeleton of the planned model (read once per process, see :func:`read_pose_meta`)."""
        if plan.identity not in _META:
            with self.scope():
                _META[plan.identity] = read_pose_meta(plan.cfg)
        return _META[plan.identity]

    def config_classes(self, cfg: Any) -> tuple[str, ...]:
        """A pose model's classes are its keypoints."""
        with self.scope():
            return read_pose_meta(cfg).names

    def plan(self, mc: Any, key: str = "model") -> ModelPlan:
        check_boxes(mc.bboxes, key)
        return super().plan(mc, key)

    def build(self, plan: ModelPlan, check: Callable[[Any], None] | None = None) -> BuiltModel:
        """As every OpenMMLab model; its classes are the keypoint names (a checkpoint's class names do not apply)."""
        built = super().build(plan, check)
        return dataclasses.replace(built, classes=self.pose_meta(plan).names)

    def check_recorders(self, plan: ModelPlan, recorders: Mapping[str, RecorderSpec]) -> None:
        """``recorder=head`` (the head's output) needs a head that outputs heatmaps: SimCC, RTMPose and regression
        heads output coordinate vectors, refused in one line (their backbone draws)."""
        head = str(plan.cfg.model.get("head", {}).get("type", "")).rsplit(".", 1)[-1]
        for name, spec in recorders.items():
            if spec.source in ("head", "head.forward") and head not in HEATMAP_HEADS:
                raise RecordingError(
                    f"recorder {name!r} draws the head's output heatmaps, but {plan.config.name}'s {head} outputs "
                    f"keypoint coordinates or x/y vectors, not maps (heatmap heads: {', '.join(HEATMAP_HEADS)}); "
                    "use recorder=backbone"
                )

    def batch_groups(self, images: Sequence[np.ndarray]) -> list[list[int]]:
        """Every box is warped to the same input size: all images share a pass."""
        return [list(range(len(images)))]

    def run_batch(
        self,
        built: BuiltModel,
        images: Sequence[np.ndarray],
        boxes: Sequence[Sequence[float] | None] | None = None,
    ) -> list[ImageResult]:
        """Each image's box (``boxes[i]``, else the whole image) through the top-down pipeline and the model."""
        import torch

        meta = self.pose_meta(built.plan)
        boxes = list(boxes) if boxes is not None else [None] * len(images)
        with self.scope():
            datas = []
            for img, box in zip(images, boxes, strict=True):
                xyxy = np.asarray(box if box is not None else whole_image_box(img.shape[:2]), np.float32)
                datas.append(built.pipeline(dict(img=img, bbox=xyxy[None], bbox_score=np.ones(1, np.float32))))
            batch = dict(inputs=[d["inputs"] for d in datas], data_samples=[d["data_samples"] for d in datas])
            with torch.no_grad():
                data = built.model.data_preprocessor(batch, False)
                input_hw = tuple(int(v) for v in data["inputs"].shape[-2:])
                geometries = [self._geometry(built, s.metainfo, input_hw) for s in data["data_samples"]]
                samples = predict(built.model, data, geometries)
        return [_result(g, sample, meta) for g, sample in zip(geometries, samples, strict=True)]

    def _geometry(self, built: BuiltModel, meta: Mapping[str, Any], input_hw: tuple[int, int]) -> Geometry:
        """The box's warp onto the input, as the pipeline's TopdownAffine computed it (UDP or not)."""
        from mmpose.structures.bbox import get_udp_warp_matrix, get_warp_matrix

        udp = any(
            str(s.get("type", "")).endswith("TopdownAffine") and s.get("use_udp")
            for s in self.test_pipeline_cfg(built.plan.cfg, None)
        )
        center = np.asarray(meta["input_center"], np.float32)
        scale = np.asarray(meta["input_scale"], np.float32)
        w, h = (int(v) for v in meta["input_size"])
        warp = (get_udp_warp_matrix if udp else get_warp_matrix)(center, scale, 0.0, output_size=(w, h))
        ori = tuple(int(v) for v in meta["ori_shape"][:2])
        return Geometry(ori, input_hw, input_hw, (0, 0), pixel_centre_affine(warp))


def _result(geometry: Geometry, sample: Any, meta: PoseMeta) -> ImageResult:
    """The box's keypoints in original-image pixels (mmpose maps them back itself), with names and skeleton."""
    pred = sample.pred_instances
    points = np.asarray(pred.keypoints, np.float32)[0, :, :2]
    scores = np.asarray(pred.keypoint_scores, np.float32)[0]
    k = len(points)
    names = meta.names if len(meta.names) == k else tuple(f"keypoint {i}" for i in range(k))
    skeleton = tuple((i, j) for i, j in meta.skeleton if i < k and j < k)
    notes: tuple[str, ...] = ()
    if not (np.isfinite(points).all() and np.isfinite(scores).all()):
        notes = ("some keypoints or scores are not finite; they are not drawn",)
    return ImageResult(geometry, Keypoints(points, scores, names, skeleton), notes)
