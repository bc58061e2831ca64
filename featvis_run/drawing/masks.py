"""Drawing a segmentor's class map: a translucent colour per class with its boundaries, and a legend."""

from __future__ import annotations

import cv2
import numpy as np

from featvis_run.predictions import SegmentationMap

__all__ = ["class_colours", "draw_segmentation"]

_LEGEND_ROWS = 8


def class_colours(count: int, palette: np.ndarray) -> np.ndarray:
    """(count, 3) BGR colours: the dataset's palette (RGB) where it has one, else well-spread generated hues."""
    colours = np.zeros((count, 3), np.uint8)
    hues = (np.arange(count) * 0.61803398875 % 1.0 * 179).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 200, np.uint8), np.full(count, 230, np.uint8)], axis=1)
    colours[:] = cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0] if count else colours
    known = min(count, len(palette))
    if known:
        colours[:known] = np.asarray(palette[:known], np.uint8)[:, ::-1]  # RGB -> BGR
    return colours


def draw_segmentation(img: np.ndarray, seg: SegmentationMap, alpha: float = 0.35) -> np.ndarray:
    """``img`` with each pixel tinted by its class colour (``alpha``), class boundaries drawn, and a legend of the
    most frequent classes (name and share of pixels) in the bottom-left corner."""
    h, w = img.shape[:2]
    labels = seg.labels.astype(np.int32)
    if labels.shape != (h, w):
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    count = max(int(labels.max()) + 1, len(seg.class_names)) if labels.size else len(seg.class_names)
    colours = class_colours(count, seg.palette)
    tint = colours[labels]
    out = cv2.addWeighted(img, 1.0 - alpha, tint, alpha, 0)
    edges = cv2.morphologyEx(labels.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = tint[edges]
    present = SegmentationMap(labels, seg.class_names, seg.palette).present()
    rows = present[:_LEGEND_ROWS]
    lines = [(colours[i], f"{seg.class_names[i] if i < len(seg.class_names) else i} {share:.0%}") for i, share in rows]
    if len(present) > _LEGEND_ROWS:
        lines.append((None, f"+{len(present) - _LEGEND_ROWS} more"))
    _legend(out, lines)
    return out


def _legend(img: np.ndarray, lines: list[tuple[np.ndarray | None, str]]) -> None:
    if not lines:
        return
    scale, pad, swatch = 0.4, 4, 10
    sizes = [cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0] for _, text in lines]
    line_h = max(th for _, th in sizes) + 6
    box_w = min(img.shape[1], max(tw for tw, _ in sizes) + swatch + 3 * pad)
    box_h = min(img.shape[0], line_h * len(lines) + pad)
    y0 = img.shape[0] - box_h
    img[y0:, :box_w] = (img[y0:, :box_w] * 0.3).astype(np.uint8)
    for row, (colour, text) in enumerate(lines):
        y = y0 + pad + row * line_h
        if colour is not None:
            cv2.rectangle(img, (pad, y), (pad + swatch, y + swatch), tuple(int(c) for c in colour), -1)
        cv2.putText(
            img, text, (2 * pad + swatch, y + swatch), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA
        )
