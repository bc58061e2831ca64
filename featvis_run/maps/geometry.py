"""Where a feature map lies on the input image. Pure functions, no I/O.

A detector's test pipeline resizes the image (to ``img_hw``), places it in the network input at ``offset_hw``
(top-left for most models; centred for CenterNet/CornerNet) and pads it to ``input_hw``; a feature map covers the
padded input. To overlay a map on the original image it is cropped to the cells that cover the resized image,
upsampled, and cropped to the image exactly.

A classifier's pipeline resizes the short edge and centre-crops: the resized image starts above and left of the
input (``offset_hw`` negative) and the input covers only part of it. A top-down pose model warps a box of the image
onto its input with an ``affine`` (original pixel coordinates to input pixel coordinates). In both cases the map is
laid on the original image by inverse warping (each picture pixel samples the map where it lands in the input), and
the pixels the network never saw get no map (NaN; :func:`unseen_region` marks them).

Coordinates are continuous, pixel ``i`` spanning [i, i + 1) (its centre at i + 0.5): without an affine an original
pixel (x, y) lands at x_in = x * img_w / ori_w + offset_w (y_in likewise), and feature cell ``j`` of a map with
stride ``s`` covers input pixels [j * s, (j + 1) * s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "Affine",
    "Geometry",
    "cell_at",
    "cell_placement",
    "cell_span",
    "crop_valid",
    "feature_stride",
    "geometry_record",
    "unseen_region",
    "upsample_to_canvas",
    "valid_cells",
]

Affine = tuple[tuple[float, float, float], tuple[float, float, float]]
"""A 2x3 row-major matrix [[a, b, c], [d, e, f]]: x_in = a x + b y + c, y_in = d x + e y + f."""


@dataclass(frozen=True)
class Geometry:
    """Sizes (H, W) of the original image, the resized image and the padded network input, and where the resized
    image's top-left corner lies in the input (``offset_hw``, (0, 0) unless the pipeline centres it; negative when it
    centre-crops). ``affine``, when set, maps original pixel coordinates to input pixel coordinates and replaces the
    resize and offset (then ``img_hw`` = ``input_hw`` and ``offset_hw`` = (0, 0): every input cell is valid)."""

    ori_hw: tuple[int, int]
    img_hw: tuple[int, int]
    input_hw: tuple[int, int]
    offset_hw: tuple[int, int] = (0, 0)
    affine: Affine | None = None

    @classmethod
    def identity(cls, hw: tuple[int, int]) -> Geometry:
        """A map that covers exactly the image (no resize, no padding)."""
        return cls(hw, hw, hw)

    @property
    def pads_only(self) -> bool:
        """Whether the whole resized image lies inside the input (resize and padding, no crop, no affine)."""
        return self.affine is None and all(
            o >= 0 and o + i <= n for o, i, n in zip(self.offset_hw, self.img_hw, self.input_hw, strict=True)
        )

    def to_input(self) -> np.ndarray:
        """The 3x3 matrix mapping original pixel coordinates (x, y, 1) to input pixel coordinates."""
        if self.affine is not None:
            return np.vstack([np.asarray(self.affine, np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])
        (oh, ow), (ih, iw), (dy, dx) = self.ori_hw, self.img_hw, self.offset_hw
        return np.array([[iw / ow, 0.0, dx], [0.0, ih / oh, dy], [0.0, 0.0, 1.0]])


def geometry_record(g: Geometry) -> dict[str, list[int] | list[list[float]] | None]:
    """``g`` as the run folder and the cache store it: ``{ori_hw, img_hw, input_hw, offset_hw, affine}`` (plain
    lists; ``affine`` null or [[a, b, c], [d, e, f]])."""
    affine = [[float(v) for v in row] for row in g.affine] if g.affine is not None else None
    pairs = {name: [int(v) for v in getattr(g, name)] for name in ("ori_hw", "img_hw", "input_hw", "offset_hw")}
    return {**pairs, "affine": affine}


def feature_stride(input_size: int, cells: int) -> float:
    """Input pixels per feature cell along one axis.

    Detectors downsample by powers of two, rounding sizes up (stride-2 convolutions, e.g. RetinaNet's P6/P7), so
    the stride is the exact ratio when that is a power of two, else the power of two that yields ``cells`` with
    ceil rounding, and the plain ratio when none does.
    """
    if cells <= 0:
        raise ValueError(f"a feature map needs at least one cell, got {cells}")
    ratio = input_size / cells
    if ratio.is_integer() and int(ratio) & (int(ratio) - 1) == 0:
        return ratio
    stride = 2 ** math.ceil(math.log2(ratio))
    if math.ceil(input_size / stride) == cells:
        return float(stride)
    return ratio


def cell_span(cells: int, img: int, inp: int, offset: int = 0) -> tuple[int, int, float]:
    """Along one axis: the first and past-the-last cell that cover image pixels [offset, offset + img) of an
    input of ``inp`` pixels (clipped to the map: a centre crop's image starts before the input), and the stride."""
    stride = feature_stride(inp, cells)
    start = min(cells - 1, max(0, math.floor(offset / stride + 1e-6)))
    stop = max(start + 1, min(cells, math.ceil((offset + img) / stride - 1e-6)))
    return start, stop, stride


def _spans(feat_hw: tuple[int, int], geom: Geometry) -> list[tuple[int, int, float]]:
    return [cell_span(*args) for args in zip(feat_hw, geom.img_hw, geom.input_hw, geom.offset_hw, strict=True)]


def valid_cells(feat_hw: tuple[int, int], geom: Geometry) -> tuple[int, int]:
    """How many rows and columns of a map cover the resized image (the rest covers padding)."""
    spans = _spans(feat_hw, geom)
    return spans[0][1] - spans[0][0], spans[1][1] - spans[1][0]


def cell_placement(feat_hw: tuple[int, int], geom: Geometry) -> tuple[tuple[float, float], tuple[int, int]]:
    """The manifest's ``stride_hw`` (input pixels per cell, rows then columns) and ``cell_origin`` (the first valid
    cell's row and column in the uncropped map) of a map of ``feat_hw`` cells placed by ``geom``."""
    spans = _spans(feat_hw, geom)
    return (float(spans[0][2]), float(spans[1][2])), (spans[0][0], spans[1][0])


def crop_valid(feat: np.ndarray, geom: Geometry) -> np.ndarray:
    """Crop a (C, H, W) (or (H, W)) map to the cells that cover the resized image."""
    (r0, r1, _), (c0, c1, _) = _spans(tuple(feat.shape[-2:]), geom)
    return feat[..., r0:r1, c0:c1]


def cell_at(feat_hw: tuple[int, int], geom: Geometry, x: float, y: float) -> tuple[int, int] | None:
    """The (row, col) of the valid (cropped) map that original pixel coordinates (x, y) fall in, or None outside
    it: (x_in, y_in) through the geometry, row = floor(y_in / sy) - r0, col = floor(x_in / sx) - c0 (the run
    folder's ``stride_hw`` and ``cell_origin``); also None outside the network input."""
    x_in, y_in, _ = geom.to_input() @ np.array([x, y, 1.0])
    (r0, r1, sy), (c0, c1, sx) = _spans(feat_hw, geom)
    if not (0 <= y_in < geom.input_hw[0] and 0 <= x_in < geom.input_hw[1]):
        return None
    row, col = math.floor(y_in / sy) - r0, math.floor(x_in / sx) - c0
    return (row, col) if 0 <= row < r1 - r0 and 0 <= col < c1 - c0 else None


def _canvas_to_input(geom: Geometry, canvas_hw: tuple[int, int]) -> np.ndarray:
    """3x3: a canvas pixel index (x, y) (its centre) to input pixel coordinates."""
    (ch, cw), (oh, ow) = canvas_hw, geom.ori_hw
    to_original = np.array([[ow / cw, 0.0, 0.5 * ow / cw], [0.0, oh / ch, 0.5 * oh / ch], [0.0, 0.0, 1.0]])
    return geom.to_input() @ to_original


def unseen_region(feat_hw: tuple[int, int], geom: Geometry, canvas_hw: tuple[int, int]) -> np.ndarray | None:
    """A (H, W) bool mask of the canvas pixels the map does not cover: outside the network input (cropped away,
    outside the warped box) or outside the valid cells. None when it covers the whole canvas (resize and pad)."""
    if geom.pads_only:
        return None
    m = _canvas_to_input(geom, canvas_hw)
    ys, xs = np.mgrid[0 : canvas_hw[0], 0 : canvas_hw[1]].astype(np.float64)
    seen = np.ones(canvas_hw, bool)
    for axis, (start, stop, stride) in enumerate(_spans(feat_hw, geom)):
        row = 1 - axis  # spans are (height, width); the matrix's rows are (x, y)
        coord = m[row, 0] * xs + m[row, 1] * ys + m[row, 2]
        lo, hi = max(0.0, start * stride), min(float(geom.input_hw[axis]), stop * stride)
        seen &= (coord >= lo) & (coord < hi)
    return None if seen.all() else ~seen


def upsample_to_canvas(
    cropped: np.ndarray, feat_hw: tuple[int, int], geom: Geometry, canvas_hw: tuple[int, int]
) -> np.ndarray:
    """Bilinearly upsample a cropped (H, W) map so that it lines up with the original image drawn at ``canvas_hw``.

    ``feat_hw`` is the uncropped map's size (it fixes the stride); ``canvas_hw`` is the original image's size or
    the requested ``resize_shape``. For a crop or an affine the map is inverse-warped onto the canvas (each canvas
    pixel samples the map where its centre lands) and the pixels the network did not see are NaN.
    """
    if not geom.pads_only:
        return _warp_to_canvas(cropped, feat_hw, geom, canvas_hw)
    target, shift = [], []
    for axis in range(2):
        start, _, stride = cell_span(feat_hw[axis], geom.img_hw[axis], geom.input_hw[axis], geom.offset_hw[axis])
        scale = canvas_hw[axis] / geom.img_hw[axis]  # resized pixels -> canvas pixels
        # the crop begins at input pixel start * stride, the image at offset: skip the difference
        skip = int(round((geom.offset_hw[axis] - start * stride) * scale))
        extent = int(round(cropped.shape[axis] * stride * scale))
        shift.append(skip)
        target.append(max(canvas_hw[axis] + skip, extent))
    up = cv2.resize(cropped.astype(np.float32), (target[1], target[0]), interpolation=cv2.INTER_LINEAR)
    return up[shift[0] : shift[0] + canvas_hw[0], shift[1] : shift[1] + canvas_hw[1]]


def _warp_to_canvas(
    cropped: np.ndarray, feat_hw: tuple[int, int], geom: Geometry, canvas_hw: tuple[int, int]
) -> np.ndarray:
    """Canvas -> original -> input -> cell index (cell ``j``'s centre at input (j + 0.5) * stride), sampled
    linearly; NaN where :func:`unseen_region` says so."""
    (r0, _, sy), (c0, _, sx) = _spans(feat_hw, geom)
    to_cells = np.array([[1.0 / sx, 0.0, -0.5 - c0], [0.0, 1.0 / sy, -0.5 - r0], [0.0, 0.0, 1.0]])
    m = (to_cells @ _canvas_to_input(geom, canvas_hw))[:2]
    up = cv2.warpAffine(
        np.ascontiguousarray(cropped, np.float32),
        m,
        (int(canvas_hw[1]), int(canvas_hw[0])),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    unseen = unseen_region(feat_hw, geom, canvas_hw)
    if unseen is not None:
        up[unseen] = np.nan
    return up
