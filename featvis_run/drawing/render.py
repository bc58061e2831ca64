"""Drawing one reduced map: a heatmap at its own resolution, or aligned and blended on the image, as a single map,
a top-k grid or an RGB image, with the detector's boxes on single overlays. Pure, no file I/O."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from featvis_run.drawing.boxes import draw_detections
from featvis_run.drawing.colour import (
    MISSING,
    blend,
    colorize,
    colorize_signed,
    colormap_id,
    paint_missing,
    to_uint8,
)
from featvis_run.drawing.layout import check_arrangement, magnify, tile_grid
from featvis_run.drawing.masks import draw_segmentation
from featvis_run.maps.geometry import Geometry, upsample_to_canvas
from featvis_run.maps.reduce import ReducedMap
from featvis_run.predictions import Detections, Predictions, SegmentationMap

__all__ = ["RenderOptions", "render_map"]


@dataclass(frozen=True)
class RenderOptions:
    """Drawing options, from the ``output`` and ``layout`` config groups."""

    overlaid: bool = True
    alpha: float = 0.5
    resize_shape: tuple[int, int] | None = None
    colormap: str = "jet"
    min_size: int = 128
    arrangement: tuple[int, int] | None = None
    min_tile: int = 64
    max_tile: int | None = 320  # long side of an overlaid grid tile (the image is shrunk to it); None: image size
    gap: int = 2
    label: bool = True
    signed: bool = False  # diverging colormap centred on 0 (signed diffs) instead of min-max scaling
    value_range: tuple[float, float] | None = None  # None: min-max per map; (lo, hi): colours over it, values clipped


def _shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` scaled down (never up) so its long side is at most ``max_side``."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _canvas_image(image: np.ndarray, opts: RenderOptions) -> np.ndarray:
    if opts.resize_shape is None:
        return image
    h, w = opts.resize_shape
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def _draw_one(
    map2d: np.ndarray, feat_hw: tuple[int, int], geom: Geometry, canvas: np.ndarray | None, opts: RenderOptions
) -> np.ndarray:
    """One (H, W) map as a heatmap: blended on ``canvas`` when given, else at its own resolution."""
    if canvas is not None:
        up = upsample_to_canvas(map2d, feat_hw, geom, canvas.shape[:2])
        return paint_missing(blend(canvas, _colorize(up, opts), opts.alpha), up)
    if opts.resize_shape is not None:
        h, w = opts.resize_shape
        map2d = cv2.resize(map2d.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return _colorize(map2d, opts)


def _colorize(map2d: np.ndarray, opts: RenderOptions) -> np.ndarray:
    if opts.signed:
        return colorize_signed(map2d)
    if opts.value_range is not None:  # one fixed range (e.g. shared by frames): lo -> 0, hi -> 255, clipped
        lo, hi = (float(v) for v in opts.value_range)
        scaled = (np.clip(np.nan_to_num(map2d, nan=lo), lo, hi) - lo) * (255.0 / (hi - lo) if hi > lo else 0.0)
        u8 = np.floor(scaled).astype(np.uint8)
        return paint_missing(cv2.applyColorMap(u8, colormap_id(opts.colormap)), map2d)
    return colorize(map2d, opts.colormap)


def _empty(like: np.ndarray) -> np.ndarray:
    """A grey picture of ``like``'s size marked "no finite values"."""
    out = np.empty_like(like)
    out[:] = MISSING
    text = "no finite values"
    scale = max(0.4, min(out.shape[1] / 320, 1.5))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    org = (max(0, (out.shape[1] - tw) // 2), (out.shape[0] + th) // 2)
    cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def render_map(
    reduced: ReducedMap,
    feat_hw: tuple[int, int],
    geom: Geometry,
    image: np.ndarray | None,
    opts: RenderOptions,
    predictions: Predictions | None = None,
) -> np.ndarray:
    """Draw a reduced, valid-cropped map.

    ``feat_hw`` is the recorded map's full size (before cropping) and ``geom`` its placement on ``image``
    (the original BGR image). Overlaid maps are drawn at the image's size (or ``resize_shape``); predictions
    (detector boxes, a segmentor's class map) are drawn on single overlaid maps only, never on grids.
    """
    canvas = _canvas_image(image, opts) if opts.overlaid and image is not None else None
    if reduced.kind == "grid":
        rows, cols = check_arrangement(len(reduced.channels), opts.arrangement)
        canvas = _shrink(canvas, opts.max_tile) if canvas is not None else None
        tiles = [_draw_one(m, feat_hw, geom, canvas, opts) for m in reduced.maps]
        tiles = [magnify(t, opts.min_tile) for t in tiles] if canvas is None else tiles
        labels = [f"ch {c}" for c in reduced.channels] if opts.label else []
        return tile_grid(tiles, labels, rows, cols, opts.gap)
    if reduced.kind == "image":
        rgb = reduced.maps
        if canvas is not None:
            rgb = np.stack([upsample_to_canvas(ch, feat_hw, geom, canvas.shape[:2]) for ch in rgb])
        bgr = cv2.cvtColor(np.ascontiguousarray(to_uint8(rgb).transpose(1, 2, 0)), cv2.COLOR_RGB2BGR)
        bgr = paint_missing(blend(canvas, bgr, opts.alpha) if canvas is not None else bgr, rgb.sum(axis=0))
        return bgr if canvas is not None else magnify(bgr, opts.min_size)
    if not np.isfinite(reduced.maps).any():  # nothing to draw: a grey picture that says so
        return _empty(canvas if canvas is not None else magnify(_colorize(reduced.maps[0], opts), opts.min_size))
    out = _draw_one(reduced.maps[0], feat_hw, geom, canvas, opts)
    if canvas is None:
        return magnify(out, opts.min_size)
    if isinstance(predictions, Detections) and len(predictions.boxes):
        scale = (canvas.shape[0] / geom.ori_hw[0], canvas.shape[1] / geom.ori_hw[1])
        out = draw_detections(out, predictions, scale)
    elif isinstance(predictions, SegmentationMap):
        out = draw_segmentation(out, predictions)
    return out
