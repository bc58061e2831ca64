"""The mmsegmentation 1.x adapter: resize-only test pipeline, whole-image inference, one forward pass per image
size, and a class per pixel as the prediction.

Differences from mmdet it handles: the test pipeline's ``LoadAnnotations`` needs a label file (dropped); the network
input is the resized image (no padding unless the data preprocessor's ``test_cfg`` asks for it, then
``padding_size`` says where); images of different sizes cannot share a batch; ``slide`` inference runs the backbone
once per window, so recording uses ``whole`` inference (one pass over the whole resized image; the predicted map can
differ slightly from slide inference's, and the summary says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import BuiltModel, ImageResult
from featvis_run.models.openmmlab import OpenMMLabAdapter, predict
from featvis_run.predictions import SegmentationMap
from featvis_run.schema import RecorderSpec, RecorderType

__all__ = ["FIXED_SIZE_BACKBONES", "QUERY_HEADS", "MmsegAdapter", "decode_head_recorders", "fixed_input_size"]

#: decode heads that output per-query classes and masks, not class logits per pixel.
QUERY_HEADS = ("MaskFormerHead", "Mask2FormerHead")

#: backbones whose position tables are sized for one input size (their ``img_size``, default 224) and are not
#: interpolated at test time: BEiT's relative position bias, MAE's absolute position embedding.
FIXED_SIZE_BACKBONES = {"BEiT": 224, "MAE": 224}


def fixed_input_size(model_cfg: Any) -> tuple[int, int] | None:
    """The (H, W) input a segmentor accepts when its backbone is one of :data:`FIXED_SIZE_BACKBONES` (its
    ``img_size``: an int, or one or two sizes), else None (any size)."""
    backbone = model_cfg.get("backbone") or {}
    kind = str(backbone.get("type", "")).rsplit(".", 1)[-1]
    if kind not in FIXED_SIZE_BACKBONES:
        return None
    size = backbone.get("img_size", FIXED_SIZE_BACKBONES[kind])
    sizes = [int(size)] if isinstance(size, (int, float)) else [int(v) for v in size]
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) <= 0:
        return None
    return sizes[0], sizes[1]


def decode_head_recorders(
    model_cfg: Any, recorders: Mapping[str, RecorderSpec]
) -> tuple[dict[str, RecorderSpec], list[str]]:
    """Recorders of ``decode_head.forward`` (the ``decode_head`` preset) pointed where a segmentor's head really runs:

    - a cascade (``decode_head`` a list: OCRNet, PointRend) has no ``decode_head.forward`` of its own: its inputs
      are the first head's, its logits the last head's prediction (PointRend's refined map exists nowhere else);
    - a MaskFormer-family head outputs per-query classes and masks: its logits are its per-pixel class scores
      (``decode_head.predict``).

    Returns the recorders (others unchanged) and a note for each kind of change."""
    heads = model_cfg.get("decode_head")
    cascade = isinstance(heads, (list, tuple)) and len(heads) > 0
    kind = "" if cascade or not heads else str(heads.get("type", "")).rsplit(".", 1)[-1]
    query = kind in QUERY_HEADS
    out, notes = dict(recorders), []
    for name, spec in recorders.items():
        if spec.source != "decode_head.forward" or not (cascade or query):
            continue
        if spec.type is RecorderType.method_inputs and cascade:
            out[name] = replace(spec, source="decode_head.0.forward")
        elif spec.type is RecorderType.method_outputs:
            last = f"decode_head.{len(heads) - 1}" if cascade else "decode_head"
            out[name] = replace(spec, source=f"{last}.predict")
    if out == dict(recorders):
        return out, notes
    if cascade:
        types = ", ".join(str(h.get("type", "?")).rsplit(".", 1)[-1] for h in heads)
        notes.append(
            f"the decode head is a cascade of {len(heads)} heads ({types}): decode_head.forward is recorded as the "
            f"first head's inputs (decode_head.0.forward) and the last head's prediction "
            f"(decode_head.{len(heads) - 1}.predict: class logits at the network input size)"
        )
    else:
        notes.append(
            f"{kind} outputs per-query classes and masks: its logits are recorded as its per-pixel class scores "
            "(decode_head.predict, at the network input size)"
        )
    return out, notes


class MmsegAdapter(OpenMMLabAdapter):
    """mmsegmentation 1.x segmentors (EncoderDecoder and CascadeEncoderDecoder)."""

    repo = "mmseg"
    example_config = "segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py"

    def adjust_config(self, cfg: Any) -> list[str]:
        notes = []
        test_cfg = cfg.model.get("test_cfg") or {}
        if test_cfg.get("mode", "whole") != "whole":
            cfg.model.test_cfg = {**test_cfg, "mode": "whole"}
            notes.append(
                f"the config's test_cfg.mode={test_cfg.get('mode')!r} (one backbone pass per window) was replaced by "
                "whole-image inference, so each map covers the whole image; predictions can differ slightly"
            )
        fixed = fixed_input_size(cfg.model)
        if fixed is not None:  # the resized image is padded (bottom, right) to the size the backbone accepts
            preprocessor = cfg.model.get("data_preprocessor") or {}
            cfg.model.data_preprocessor = {**preprocessor, "test_cfg": {"size": fixed}}
        return notes

    def redirect_recorders(
        self, cfg: Any, recorders: Mapping[str, RecorderSpec]
    ) -> tuple[dict[str, RecorderSpec], list[str]]:
        return decode_head_recorders(cfg.model, recorders)

    def test_pipeline_cfg(self, cfg: Any, test_scale: Sequence[int] | None) -> list[dict[str, Any]]:
        pipeline = cfg.get("test_dataloader", {}).get("dataset", {}).get("pipeline") or cfg.get("test_pipeline", [])
        steps = [dict(s) for s in pipeline if "Annotation" not in str(s.get("type", ""))]
        fixed = fixed_input_size(cfg.model)
        scale = (fixed[1], fixed[0]) if fixed is not None else test_scale  # Resize scales are (w, h)
        for step in steps:
            kind = str(step.get("type", "")).rsplit(".", 1)[-1]
            if kind == "LoadImageFromFile":
                step["type"] = "mmseg.LoadImageFromNDArray"
            if scale is not None and kind.endswith("Resize") and "scale" in step:
                step["scale"] = tuple(int(v) for v in scale)
                if fixed is not None:
                    step["keep_ratio"] = True
        return steps

    def test_scale_note(self, cfg: Any, test_scale: Sequence[int] | None, key: str) -> str | None:
        fixed = fixed_input_size(cfg.model)
        if fixed is None:
            return super().test_scale_note(cfg, test_scale, key)
        backbone = str(cfg.model.backbone.get("type", "")).rsplit(".", 1)[-1]
        asked = f"; {key}.test_scale={list(test_scale)} was not used" if test_scale is not None else ""
        return (
            f"{backbone}'s position tables are fixed to {fixed[0]}x{fixed[1]} inputs (its img_size, the training "
            f"crop): each image is resized to fit {fixed[0]}x{fixed[1]} and padded to it{asked}"
        )

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
                samples = predict(built.model, data, geometries)
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
