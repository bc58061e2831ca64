"""Arranging pictures: top-k grids with labelled tiles and contact sheets, on one numpy canvas."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from featvis_run.errors import ConfigError

__all__ = [
    "auto_arrangement",
    "caption_band",
    "check_arrangement",
    "contact_sheet",
    "magnify",
    "pad_to_largest",
    "put_label",
    "tile_grid",
]


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


def put_label(img: np.ndarray, text: str) -> None:
    """Write ``text`` in white on a black box in the top-left corner of ``img`` (in place)."""
    scale = 0.4
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(img, (0, 0), (tw + 4, th + base + 4), (0, 0, 0), -1)
    cv2.putText(img, text, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def caption_band(picture: np.ndarray, text: str, min_scale: float = 0.45) -> np.ndarray:
    """``picture`` (BGR) with a dark band on top holding ``text`` in white, outside the picture (nothing of it is
    covered); the font grows with the width (0.45 to 1.0 of OpenCV's simplex font) and shrinks until it fits."""
    w = picture.shape[1]
    scale = max(min_scale, min(w / 640, 1.0))
    thick = 2 if scale >= 0.9 else 1
    while scale > 0.3 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] > w - 8:
        scale -= 0.05
    (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    band = np.full((th + base + 10, w, 3), 32, np.uint8)
    cv2.putText(band, text, (4, th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return np.vstack([band, picture])


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
            put_label(cell, labels[i])
    return canvas


def pad_to_largest(pictures: Sequence[np.ndarray]) -> list[np.ndarray]:
    """BGR pictures of any sizes, each padded with white on the right and bottom to the largest height and width."""
    height = max(p.shape[0] for p in pictures)
    width = max(p.shape[1] for p in pictures)
    padded = []
    for p in pictures:
        canvas = np.full((height, width, 3), 255, np.uint8)
        canvas[: p.shape[0], : p.shape[1]] = p
        padded.append(canvas)
    return padded


def contact_sheet(
    pictures: Sequence[np.ndarray], labels: Sequence[str], gap: int = 4, rows: int | None = None
) -> np.ndarray:
    """Pictures (sizes may differ; each padded to the largest) in a grid, each with its label (e.g. the image) in a
    caption band above it, outside the picture.

    ``rows=None`` picks a near-square grid; ``rows=1`` puts them side by side."""
    captioned = [caption_band(p, labels[i]) if i < len(labels) and labels[i] else p for i, p in enumerate(pictures)]
    tiles = pad_to_largest(captioned)
    if rows is None:
        rows, cols = auto_arrangement(len(tiles))
    else:
        cols = math.ceil(len(tiles) / rows)
    return tile_grid(tiles, [], rows, cols, gap)
