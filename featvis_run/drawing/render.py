"""Drawing one reduced map: a heatmap, or aligned and blended on the image, as a single map, a top-k grid or an RGB
image, with the detector's boxes on single maps, and optionally a labelled colour bar. Pure, no file I/O.

Picture sizes: a map of an image is drawn at the image's size (or ``resize_shape``), overlaid or not (a heatmap is
the same picture without the image underneath); a top-k grid's tiles are that picture shrunk to ``max_tile``. Only
a map without an image is drawn at its own resolution, enlarged by an integer factor (``min_size``, ``min_tile``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from featvis_run.drawing.boxes import draw_detections, draw_ground_truth
from featvis_run.drawing.classes import draw_classification
from featvis_run.drawing.colorbar import add_colorbar
from featvis_run.drawing.colour import (
    MISSING,
    blend,
    colorize,
    colorize_signed,
    colormap_lut,
    finite_range,
    paint_missing,
    to_uint8,
)
from featvis_run.drawing.keypoints import draw_keypoints
from featvis_run.drawing.layout import check_arrangement, magnify, tile_grid
from featvis_run.drawing.masks import draw_segmentation
from featvis_run.maps.geometry import Geometry, unseen_region, upsample_to_canvas
from featvis_run.maps.reduce import ReducedMap
from featvis_run.predictions import Classification, Detections, Keypoints, Predictions, SegmentationMap

__all__ = ["Drawn", "RenderOptions", "render_map", "render_map_scaled", "with_colorbar"]


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
    # None: each map min-max scaled on its own (as MMEngine); (lo, hi): colours mapped over that fixed range, values
    # outside clipped (signed maps: over max(|lo|, |hi|) around 0)
    value_range: tuple[float, float] | None = None
    colorbar: bool = False  # a labelled colour bar on the right of each picture
    max_boxes: int | None = None  # draw at most this many detector boxes (the best by score); None: all given
    channel_names: tuple[str, ...] | None = None  # grid labels by channel index (a pose head: keypoint names)


@dataclass(frozen=True)
class Drawn:
    """A rendered picture and the colour range it was drawn with: ``scale`` (lo, hi) shared by the whole picture,
    or None with ``tile_scales`` when each grid tile was min-max scaled on its own (None too for an empty map)."""

    picture: np.ndarray
    scale: tuple[float, float] | None
    tile_scales: tuple[tuple[float, float] | None, ...] = ()


def _shrink(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` scaled down (never up) so its long side is at most ``max_side``."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _channel_label(channel: int, names: tuple[str, ...] | None) -> str:
    """A grid tile's label: ``ch 12``, or the channel's name when the map names its channels (``5 left_shoulder``)."""
    if names is not None and 0 <= channel < len(names):
        return f"{channel} {names[channel]}"
    return f"ch {channel}"


def _canvas_image(image: np.ndarray, opts: RenderOptions) -> np.ndarray:
    if opts.resize_shape is None:
        return image
    h, w = opts.resize_shape
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def _used_range(values: np.ndarray, opts: RenderOptions) -> tuple[float, float] | None:
    """The range the colours of ``values`` span: the fixed one, else their min-max (signed: -peak..peak)."""
    if opts.value_range is not None:
        lo, hi = float(opts.value_range[0]), float(opts.value_range[1])
        if opts.signed:
            peak = max(abs(lo), abs(hi))
            return (-peak, peak)
        return (lo, hi)
    rng = finite_range(values)
    if rng is None or not opts.signed:
        return rng
    peak = max(abs(rng[0]), abs(rng[1]))
    return (-peak, peak)


def _draw_one(
    map2d: np.ndarray, feat_hw: tuple[int, int], geom: Geometry, canvas: np.ndarray | None, opts: RenderOptions
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """One (H, W) map as a heatmap on ``canvas``'s grid (blended on it when overlaid), or at its own resolution
    without a canvas; returns the picture and its colour range."""
    if canvas is not None:
        up = upsample_to_canvas(map2d, feat_hw, geom, canvas.shape[:2])
        heat = _colorize(up, opts)
        picture = blend(canvas, heat, opts.alpha) if opts.overlaid else heat
        return _show_unseen(paint_missing(picture, up), canvas, feat_hw, geom), _used_range(up, opts)
    if opts.resize_shape is not None:
        h, w = opts.resize_shape
        map2d = cv2.resize(map2d.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return _colorize(map2d, opts), _used_range(map2d, opts)


def _show_unseen(picture: np.ndarray, canvas: np.ndarray, feat_hw: tuple[int, int], geom: Geometry) -> np.ndarray:
    """``picture`` with the bare image where the network saw nothing (cropped away, outside a warped box): no map
    there, so the crop is visible; a resize-and-pad geometry leaves the picture as it is."""
    unseen = unseen_region(feat_hw, geom, canvas.shape[:2])
    if unseen is None:
        return picture
    out = picture.copy()
    out[unseen] = canvas[unseen]
    return out


def _colorize(map2d: np.ndarray, opts: RenderOptions) -> np.ndarray:
    if opts.signed:
        return colorize_signed(map2d, opts.value_range)
    return colorize(map2d, opts.colormap, opts.value_range)


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


def with_colorbar(drawn: Drawn, opts: RenderOptions) -> Drawn:
    """``drawn`` with a labelled colour bar on its right when ``opts.colorbar`` (and it has a colour range)."""
    if not opts.colorbar or (drawn.scale is None and not drawn.tile_scales):
        return drawn
    bar = add_colorbar(drawn.picture, drawn.scale, colormap_lut(opts.colormap, opts.signed))
    return Drawn(bar, drawn.scale, drawn.tile_scales)


def render_map(
    reduced: ReducedMap,
    feat_hw: tuple[int, int],
    geom: Geometry,
    image: np.ndarray | None,
    opts: RenderOptions,
    predictions: Predictions | None = None,
) -> np.ndarray:
    """The picture of :func:`render_map_scaled`."""
    return render_map_scaled(reduced, feat_hw, geom, image, opts, predictions).picture


def render_map_scaled(
    reduced: ReducedMap,
    feat_hw: tuple[int, int],
    geom: Geometry,
    image: np.ndarray | None,
    opts: RenderOptions,
    predictions: Predictions | None = None,
    ground_truth: Detections | None = None,
) -> Drawn:
    """Draw a reduced, valid-cropped map; returns the picture with the colour range it was drawn with.

    ``feat_hw`` is the recorded map's full size (before cropping) and ``geom`` its placement on ``image``
    (the original BGR image). Maps of an image are drawn at the image's size (or ``resize_shape``), blended on it
    when ``overlaid``; predictions (detector boxes, a segmentor's class map, keypoints and skeleton) are drawn on
    single maps only, never on grids. With ``colorbar`` a labelled colour bar is appended on the right.
    ``ground_truth`` (annotated boxes) is drawn in magenta under the predictions, on single maps of the image.
    """
    canvas = _canvas_image(image, opts) if image is not None else None
    if reduced.kind == "grid":
        rows, cols = check_arrangement(len(reduced.channels), opts.arrangement)
        canvas = _shrink(canvas, opts.max_tile) if canvas is not None else None
        drawn = [_draw_one(m, feat_hw, geom, canvas, opts) for m in reduced.maps]
        tiles = [t for t, _ in drawn]
        tiles = [magnify(t, opts.min_tile) for t in tiles] if canvas is None else tiles
        labels = [_channel_label(c, opts.channel_names) for c in reduced.channels] if opts.label else []
        grid = tile_grid(tiles, labels, rows, cols, opts.gap)
        if opts.value_range is not None:
            return with_colorbar(Drawn(grid, drawn[0][1]), opts)
        return with_colorbar(Drawn(grid, None, tuple(r for _, r in drawn)), opts)
    if reduced.kind == "image":
        rgb = reduced.maps
        if canvas is not None:
            rgb = np.stack([upsample_to_canvas(ch, feat_hw, geom, canvas.shape[:2]) for ch in rgb])
        bgr = cv2.cvtColor(np.ascontiguousarray(to_uint8(rgb, opts.value_range).transpose(1, 2, 0)), cv2.COLOR_RGB2BGR)
        blended = blend(canvas, bgr, opts.alpha) if canvas is not None and opts.overlaid else bgr
        bgr = paint_missing(blended, rgb.sum(axis=0))
        bgr = _show_unseen(bgr, canvas, feat_hw, geom) if canvas is not None else bgr
        scale = opts.value_range or finite_range(rgb)
        return Drawn(bgr if canvas is not None else magnify(bgr, opts.min_size), scale)
    if not np.isfinite(reduced.maps).any():  # nothing to draw: a grey picture that says so
        like = canvas if canvas is not None else magnify(_colorize(reduced.maps[0], opts), opts.min_size)
        return Drawn(_empty(like), None)
    out, scale = _draw_one(reduced.maps[0], feat_hw, geom, canvas, opts)
    if canvas is None:
        return with_colorbar(Drawn(magnify(out, opts.min_size), scale), opts)
    sizes = (canvas.shape[0] / geom.ori_hw[0], canvas.shape[1] / geom.ori_hw[1])
    if ground_truth is not None and len(ground_truth.boxes):
        out = draw_ground_truth(out, ground_truth, sizes)
    if isinstance(predictions, Detections) and len(predictions.boxes):
        out = draw_detections(out, predictions.best(opts.max_boxes), sizes)
    elif isinstance(predictions, SegmentationMap):
        out = draw_segmentation(out, predictions)
    elif isinstance(predictions, Keypoints):
        out = draw_keypoints(out, predictions, (canvas.shape[0] / geom.ori_hw[0], canvas.shape[1] / geom.ori_hw[1]))
    elif isinstance(predictions, Classification):
        out = draw_classification(out, predictions)
    return with_colorbar(Drawn(out, scale), opts)
