"""The channel atlas's math: per channel of a level, the N images where it fires most (its maximum over an image's
valid cells, with that cell), kept in a bounded heap; and the region of the original image a feature cell covers.
Pure functions, no I/O.

Ranking: a higher value first; among equal values the image that comes first in the run's input order (its
``seq``) first, so the atlas does not depend on the order images arrive in (threads, a resumed run, shards).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from featvis_run.maps.geometry import Geometry, cell_span

__all__ = ["TopCell", "TopCells", "cell_box", "context_box", "image_peaks"]


@dataclass(frozen=True, order=True)
class TopCell:
    """A channel's peak in one image: its value, the image's position in the run's inputs, and the valid cell
    (row, col) counted from the first valid cell of the map."""

    value: float
    seq: int
    row: int
    col: int


def image_peaks(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per channel of a (C, h, w) map of valid cells: the largest finite value and its cell (the first in row-major
    order among equal ones); (-inf, -1, -1) for a channel without a finite cell."""
    if cells.ndim != 3:
        raise ValueError(f"cells must be (C, h, w), got shape {cells.shape}")
    c, h, w = cells.shape
    if h * w == 0:
        return np.full(c, -np.inf), np.full(c, -1, np.int64), np.full(c, -1, np.int64)
    x = cells.reshape(c, h * w)
    finite = np.isfinite(x)
    scored = x if finite.all() else np.where(finite, x, -np.inf)
    index = np.argmax(scored, axis=1)
    values = scored[np.arange(c), index].astype(np.float64)
    rows, cols = np.divmod(index.astype(np.int64), w)
    found = finite.any(axis=1)
    return np.where(found, values, -np.inf), np.where(found, rows, -1), np.where(found, cols, -1)


class TopCells:
    """Per channel of one level, a min-heap of at most ``n`` peaks (see the module's ranking): memory is
    C x n entries whatever the number of images."""

    def __init__(self, channels: int, n: int):
        if channels < 0 or n < 1:
            raise ValueError(f"TopCells needs channels >= 0 and n >= 1, got {channels} and {n}")
        self.channels, self.n = channels, n
        self._heaps: list[list[tuple[float, int, int, int]]] = [[] for _ in range(channels)]
        self._floor = np.full(channels, -np.inf)  # the smallest kept value of a full heap; -inf until it is full

    def add(self, seq: int, values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        """Offer one image's peaks (from :func:`image_peaks`) as image number ``seq``."""
        if len(values) != self.channels:
            raise ValueError(f"expected peaks of {self.channels} channels, got {len(values)}")
        candidates = np.nonzero(np.isfinite(values) & (values >= self._floor))[0]
        for c in candidates.tolist():
            self._offer(c, (float(values[c]), -seq, int(rows[c]), int(cols[c])))

    def merge(self, other: TopCells) -> None:
        """Offer every peak ``other`` kept (the top cells of two parts of a run are those of the whole)."""
        if other.channels != self.channels:
            raise ValueError(f"cannot merge the peaks of {other.channels} channels into {self.channels}")
        for c, heap in enumerate(other._heaps):
            for key in heap:
                self._offer(c, key)

    def _offer(self, c: int, key: tuple[float, int, int, int]) -> None:
        heap = self._heaps[c]
        if len(heap) < self.n:
            heapq.heappush(heap, key)
        elif key > heap[0]:
            heapq.heapreplace(heap, key)
        if len(heap) == self.n:
            self._floor[c] = heap[0][0]

    def ranked(self, channel: int) -> list[TopCell]:
        """The kept peaks of ``channel``, best first."""
        return [TopCell(v, -s, r, c) for v, s, r, c in sorted(self._heaps[channel], reverse=True)]

    def seqs(self) -> set[int]:
        """The images (by seq) holding a kept peak of any channel."""
        return {-key[1] for heap in self._heaps for key in heap}


def cell_box(
    row: int,
    col: int,
    feat_hw: Sequence[int],
    geometry: Geometry,
    affine: Sequence[Sequence[float]] | None = None,
) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in original-image pixels of the region valid cell (``row``, ``col``) of a map of
    ``feat_hw`` (uncropped) covers: the stride-sized box of the network input under that cell, mapped back through
    the resize and offset (or the inverse of ``affine``, a 2x3 original-to-input matrix: the bounding box of its
    corners). Not clipped to the image."""
    spans = [
        cell_span(cells, img, inp, off)
        for cells, img, inp, off in zip(feat_hw, geometry.img_hw, geometry.input_hw, geometry.offset_hw, strict=True)
    ]
    (r0, _, sy), (c0, _, sx) = spans
    y0, x0 = (r0 + row) * sy, (c0 + col) * sx
    corners = [(x0, y0), (x0 + sx, y0), (x0, y0 + sy), (x0 + sx, y0 + sy)]
    if affine is None:
        fy, fx = geometry.ori_hw[0] / geometry.img_hw[0], geometry.ori_hw[1] / geometry.img_hw[1]
        oy, ox = geometry.offset_hw
        mapped = [((x - ox) * fx, (y - oy) * fy) for x, y in corners]
    else:
        (a, b, c), (d, e, f) = affine
        det = a * e - b * d
        if abs(det) < 1e-12:
            raise ValueError(f"the affine {affine} cannot be inverted")
        mapped = [((e * (x - c) - b * (y - f)) / det, (a * (y - f) - d * (x - c)) / det) for x, y in corners]
    xs, ys = [p[0] for p in mapped], [p[1] for p in mapped]
    return min(xs), min(ys), max(xs), max(ys)


def context_box(
    box: tuple[float, float, float, float], image_hw: Sequence[int], factor: float = 3.0
) -> tuple[int, int, int, int]:
    """``box`` grown ``factor`` times about its centre (so the crop shows the cell with its surroundings), as whole
    pixels (floor, ceil) clipped to an image of ``image_hw``; at least one pixel each way."""
    if factor <= 0:
        raise ValueError(f"factor must be positive, got {factor}")
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hw, hh = (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
    h, w = int(image_hw[0]), int(image_hw[1])
    left = min(max(0, math.floor(cx - hw)), w - 1)
    top = min(max(0, math.floor(cy - hh)), h - 1)
    right = max(left + 1, min(w, math.ceil(cx + hw)))
    bottom = max(top + 1, min(h, math.ceil(cy + hh)))
    return left, top, right, bottom
