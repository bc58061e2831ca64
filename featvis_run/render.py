"""Drawing: heatmaps, overlays, top-k grids and detector boxes with numpy and OpenCV. Pure, no file I/O.

All images are uint8 BGR (OpenCV's order). Maps are min-max scaled per map to 0..255 and colour-mapped
(JET by default), as MMEngine's ``Visualizer.draw_featmap`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from featvis_run.errors import ConfigError
from featvis_run.geometry import Geometry, upsample_to_canvas
from featvis_run.reduce import ReducedMap

__all__ = [
    "Detections",
    "RenderOptions",
    "auto_arrangement",
    "blend",
    "check_arrangement",
    "colorize",
    "colorize_signed",
    "contact_sheet",
    "draw_detections",
    "magnify",
    "render_map",
    "tile_grid",
    "to_uint8",
]


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


@dataclass(frozen=True)
class Detections:
    """Detector output in original-image pixels: boxes (N, 4) xyxy, scores (N,), labels (N,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = ()

    def above(self, thr: float) -> Detections:
        keep = self.scores >= thr
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names)


def colormap_id(name: str) -> int:
    """OpenCV's colormap constant for ``name`` (case-insensitive), or a ConfigError listing the valid names."""
    code = getattr(cv2, f"COLORMAP_{name.upper()}", None)
    if code is None:
        valid = sorted(k[len("COLORMAP_") :].lower() for k in dir(cv2) if k.startswith("COLORMAP_"))
        raise ConfigError(f"output.colormap={name!r} is not an OpenCV colormap; choose one of {', '.join(valid)}")
    return int(code)


def to_uint8(a: np.ndarray) -> np.ndarray:
    """Min-max scale to 0..255 over the whole array (cv2.NORM_MINMAX, truncated as MMEngine does)."""
    norm = cv2.normalize(a.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX)
    return np.asarray(norm, dtype=np.uint8)


def colorize(map2d: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """A (H, W) float map as a colour-mapped BGR image, min-max scaled."""
    return cv2.applyColorMap(to_uint8(map2d), colormap_id(colormap))


def _coolwarm_lut() -> np.ndarray:
    """A blue-white-red diverging lookup table (256 x 1 x 3, BGR) for signed maps."""
    stops = np.array([[59, 76, 192], [221, 221, 221], [180, 4, 38]], np.float32)  # RGB: blue, grey-white, red
    t = np.linspace(0.0, 2.0, 256)[:, None]
    rgb = np.where(t <= 1.0, stops[0] + (stops[1] - stops[0]) * t, stops[1] + (stops[2] - stops[1]) * (t - 1.0))
    return np.ascontiguousarray(rgb[:, ::-1].round().astype(np.uint8).reshape(256, 1, 3))


def colorize_signed(map2d: np.ndarray) -> np.ndarray:
    """A signed (H, W) map with a diverging colormap centred on 0: blue < 0 < red, scaled by max |value|."""
    peak = float(np.abs(map2d).max())
    scaled = map2d / peak if peak > 0 else np.zeros_like(map2d)
    u8 = np.clip(np.round(127.5 + 127.5 * scaled), 0, 255).astype(np.uint8)
    return cv2.applyColorMap(u8, _coolwarm_lut())


def blend(image: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * image + alpha * heat``, as ``cv2.addWeighted``."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"output.alpha={alpha} must be within [0, 1]")
    return cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0)


def magnify(img: np.ndarray, min_size: int) -> np.ndarray:
    """Enlarge by an integer factor (nearest neighbour) until the short side is at least ``min_size``."""
    short = min(img.shape[:2])
    if min_size <= 0 or short >= min_size:
        return img
    f = math.ceil(min_size / short)
    return cv2.resize(img, (img.shape[1] * f, img.shape[0] * f), interpolation=cv2.INTER_NEAREST)


def auto_arrangement(k: int) -> tuple[int, int]:
    """A near-square (rows, cols) grid for ``k`` tiles."""
    cols = max(1, math.ceil(math.sqrt(k)))
    return max(1, math.ceil(k / cols)), cols


def check_arrangement(k: int, arrangement: Sequence[int] | None) -> tuple[int, int]:
    """Validate ``layout.arrangement`` for ``k`` tiles; None picks :func:`auto_arrangement`."""
    if arrangement is None:
        return auto_arrangement(k)
    if len(arrangement) != 2 or min(arrangement) <= 0:
        raise ConfigError(f"layout.arrangement={list(arrangement)} must be two positive numbers [rows, cols]")
    rows, cols = int(arrangement[0]), int(arrangement[1])
    if rows * cols < k:
        r, c = auto_arrangement(k)
        raise ConfigError(
            f"layout.arrangement=[{rows}, {cols}] holds {rows * cols} maps but {k} channels are drawn (topk): "
            f"use layout.arrangement=[{r},{c}], layout=auto, or a smaller topk"
        )
    return rows, cols


def _put_label(img: np.ndarray, text: str) -> None:
    scale = 0.4
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (tw + 4, th + base + 4), (0, 0, 0), -1)
    cv2.putText(img, text, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def tile_grid(tiles: Sequence[np.ndarray], labels: Sequence[str], rows: int, cols: int, gap: int = 2) -> np.ndarray:
    """Tile equally sized BGR images row-major into a rows x cols grid, each with its label in the corner."""
    if not tiles:
        raise ValueError("no tiles to arrange")
    h, w = tiles[0].shape[:2]
    canvas = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = r * (h + gap), c * (w + gap)
        cell = canvas[y : y + h, x : x + w]
        cell[:] = tile
        if i < len(labels) and labels[i]:
            _put_label(cell, labels[i])
    return canvas


def contact_sheet(
    pictures: Sequence[np.ndarray], labels: Sequence[str], gap: int = 4, rows: int | None = None
) -> np.ndarray:
    """Pictures (sizes may differ; each padded to the largest) in a grid, each labelled (e.g. by image).

    ``rows=None`` picks a near-square grid; ``rows=1`` puts them side by side."""
    width = max(p.shape[1] for p in pictures)
    height = max(p.shape[0] for p in pictures)
    tiles = []
    for p in pictures:
        tile = np.full((height, width, 3), 255, np.uint8)
        tile[: p.shape[0], : p.shape[1]] = p
        tiles.append(tile)
    if rows is None:
        rows, cols = auto_arrangement(len(tiles))
    else:
        cols = math.ceil(len(tiles) / rows)
    return tile_grid(tiles, labels, rows, cols, gap)


def draw_detections(img: np.ndarray, dets: Detections, scale_yx: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Draw boxes (original-image pixels, scaled by ``scale_yx`` to this canvas) with class and score.

    Lowest scores first, so where boxes overlap (RetinaNet keeps one box per class) the best label is on top."""
    out = img.copy()
    sy, sx = scale_yx
    order = np.argsort(np.asarray(dets.scores), kind="stable")
    for box, score, label in zip(dets.boxes[order], dets.scores[order], dets.labels[order], strict=True):
        x1, y1, x2, y2 = (int(round(v)) for v in (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), 2)
        name = dets.class_names[label] if 0 <= label < len(dets.class_names) else str(int(label))
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + base + 2)
        cv2.rectangle(out, (x1, ty - th - base - 2), (x1 + tw + 2, ty), (0, 255, 0), -1)
        cv2.putText(out, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out


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
        return blend(canvas, _colorize(up, opts), opts.alpha)
    if opts.resize_shape is not None:
        h, w = opts.resize_shape
        map2d = cv2.resize(map2d.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return _colorize(map2d, opts)


def _colorize(map2d: np.ndarray, opts: RenderOptions) -> np.ndarray:
    return colorize_signed(map2d) if opts.signed else colorize(map2d, opts.colormap)


def render_map(
    reduced: ReducedMap,
    feat_hw: tuple[int, int],
    geom: Geometry,
    image: np.ndarray | None,
    opts: RenderOptions,
    detections: Detections | None = None,
) -> np.ndarray:
    """Draw a reduced, valid-cropped map.

    ``feat_hw`` is the recorded map's full size (before cropping) and ``geom`` its placement on ``image``
    (the original BGR image). Overlaid maps are drawn at the image's size (or ``resize_shape``); detector boxes
    are drawn on single overlaid maps only, never on grids.
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
        out = blend(canvas, bgr, opts.alpha) if canvas is not None else magnify(bgr, opts.min_size)
        return out
    out = _draw_one(reduced.maps[0], feat_hw, geom, canvas, opts)
    if canvas is None:
        return magnify(out, opts.min_size)
    if detections is not None and len(detections.boxes):
        scale = (canvas.shape[0] / geom.ori_hw[0], canvas.shape[1] / geom.ori_hw[1])
        out = draw_detections(out, detections, scale)
    return out
