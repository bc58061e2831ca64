"""A labelled colour bar beside a picture: the colours from the bottom (low values) to the top (high values), with
tick values, so a colour can be read back as a number. Pure, no file I/O."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["BAR_MARGIN", "BAR_WIDTH", "add_colorbar", "tick_values"]

#: Width in pixels of the coloured strip, and the blank margin above and below it.
BAR_WIDTH = 14
BAR_MARGIN = 8
_FONT, _SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.4


def tick_values(lo: float, hi: float, count: int = 5) -> list[float]:
    """``count`` evenly spaced values from ``lo`` to ``hi`` (one when they are equal)."""
    if not hi > lo:
        return [lo]
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


def add_colorbar(
    picture: np.ndarray, value_range: tuple[float, float] | None, lut: np.ndarray, ticks: int = 5
) -> np.ndarray:
    """``picture`` with a colour bar appended on its right.

    Args:
        picture: the BGR picture.
        value_range: (lo, hi) of the colours, labelled with ``ticks`` values; None labels the ends ``min``/``max``
            (each tile of a grid scaled on its own).
        lut: the 256 BGR colours of the colormap, index 0 for ``lo`` (see ``colour.colormap_lut``).
        ticks: how many values are labelled.
    """
    h = picture.shape[0]
    if h < 2 * BAR_MARGIN + 16:  # too short for a readable bar: grow the picture's canvas first
        grown = np.full((2 * BAR_MARGIN + 16, picture.shape[1], 3), 255, np.uint8)
        grown[:h] = picture
        picture, h = grown, grown.shape[0]
    bar_h = h - 2 * BAR_MARGIN
    if value_range is None:
        labels = [(0.0, "min"), (1.0, "max")]
    else:
        lo, hi = float(value_range[0]), float(value_range[1])
        labels = [((v - lo) / (hi - lo) if hi > lo else 0.0, f"{v:.3g}") for v in tick_values(lo, hi, ticks)]
    text_w = max(cv2.getTextSize(text, _FONT, _SCALE, 1)[0][0] for _, text in labels)
    panel = np.full((h, BAR_WIDTH + text_w + 14, 3), 255, np.uint8)
    rows = np.arange(bar_h)
    index = np.round(255.0 * (1.0 - rows / max(bar_h - 1, 1))).astype(int)  # top row: 255 (hi), bottom: 0 (lo)
    panel[BAR_MARGIN : BAR_MARGIN + bar_h, 4 : 4 + BAR_WIDTH] = lut[index][:, None, :]
    for frac, text in labels:
        y = BAR_MARGIN + int(round((1.0 - frac) * (bar_h - 1)))
        cv2.line(panel, (4 + BAR_WIDTH, y), (4 + BAR_WIDTH + 3, y), (0, 0, 0), 1)
        (_, th), _ = cv2.getTextSize(text, _FONT, _SCALE, 1)
        ty = min(max(y + th // 2, th + 1), h - 2)
        cv2.putText(panel, text, (4 + BAR_WIDTH + 6, ty), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([picture, panel], axis=1)
