"""Where a feature map lies on the input image. Pure functions, no I/O.

A detector's test pipeline resizes the image (to ``img_hw``), places it in the network input at ``offset_hw``
(top-left for most models; centred for CenterNet/CornerNet) and pads it to ``input_hw``; a feature map covers the
padded input. To overlay a map on the original image it is cropped to the cells that cover the resized image,
upsampled, and cropped to the image exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "Geometry",
    "cell_placement",
    "cell_span",
    "crop_valid",
    "feature_stride",
    "geometry_record",
    "upsample_to_canvas",
    "valid_cells",
]


@dataclass(frozen=True)
class Geometry:
    """Sizes (H, W) of the original image, the resized image and the padded network input, and where the resized
    image's top-left corner lies in the input (``offset_hw``, (0, 0) unless the pipeline centres it)."""

    ori_hw: tuple[int, int]
    img_hw: tuple[int, int]
    input_hw: tuple[int, int]
    offset_hw: tuple[int, int] = (0, 0)

    @classmethod
    def identity(cls, hw: tuple[int, int]) -> Geometry:
        """A map that covers exactly the image (no resize, no padding)."""
        return cls(hw, hw, hw)


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
    input of ``inp`` pixels, and the stride."""
    stride = feature_stride(inp, cells)
    start = min(cells - 1, max(0, math.floor(offset / stride + 1e-6)))
    stop = max(start + 1, min(cells, math.ceil((offset + img) / stride - 1e-6)))
    return start, stop, stride


def valid_cells(feat_hw: tuple[int, int], geom: Geometry) -> tuple[int, int]:
    """How many rows and columns of a map cover the resized image (the rest covers padding)."""
    spans = [cell_span(*args) for args in zip(feat_hw, geom.img_hw, geom.input_hw, geom.offset_hw, strict=True)]
    return spans[0][1] - spans[0][0], spans[1][1] - spans[1][0]


def cell_placement(feat_hw: tuple[int, int], geom: Geometry) -> tuple[tuple[float, float], tuple[int, int]]:
    """The manifest's ``stride_hw`` (input pixels per cell, rows then columns) and ``cell_origin`` (the first valid
    cell's row and column in the uncropped map) of a map of ``feat_hw`` cells placed by ``geom``."""
    spans = [cell_span(*args) for args in zip(feat_hw, geom.img_hw, geom.input_hw, geom.offset_hw, strict=True)]
    return (float(spans[0][2]), float(spans[1][2])), (spans[0][0], spans[1][0])


def geometry_record(geom: Geometry) -> dict[str, object]:
    """The manifest's ``images[].geometry``: the sizes and offset of ``geom``, and ``affine`` (None: the plain
    resize-and-offset mapping, see FORMAT)."""
    return {
        "ori_hw": list(geom.ori_hw),
        "img_hw": list(geom.img_hw),
        "input_hw": list(geom.input_hw),
        "offset_hw": list(geom.offset_hw),
        "affine": None,
    }


def crop_valid(feat: np.ndarray, geom: Geometry) -> np.ndarray:
    """Crop a (C, H, W) (or (H, W)) map to the cells that cover the resized image."""
    (r0, r1, _), (c0, c1, _) = (
        cell_span(*args) for args in zip(feat.shape[-2:], geom.img_hw, geom.input_hw, geom.offset_hw, strict=True)
    )
    return feat[..., r0:r1, c0:c1]


def upsample_to_canvas(
    cropped: np.ndarray, feat_hw: tuple[int, int], geom: Geometry, canvas_hw: tuple[int, int]
) -> np.ndarray:
    """Bilinearly upsample a cropped (H, W) map so that it lines up with the original image drawn at ``canvas_hw``.

    ``feat_hw`` is the uncropped map's size (it fixes the stride); ``canvas_hw`` is the original image's size or
    the requested ``resize_shape``.
    """
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
