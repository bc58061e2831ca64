"""Where a feature map lies on the input image. Pure functions, no I/O.

mmdet's test pipeline resizes the image (``img_shape``) and its data preprocessor pads it to the network input
(``batch_input_shape``); a feature map covers the padded input. To overlay a map on the original image it is
cropped to the cells that cover the resized image, upsampled, and cropped to the image exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Geometry", "crop_valid", "feature_stride", "upsample_to_canvas", "valid_cells"]


@dataclass(frozen=True)
class Geometry:
    """Sizes (H, W) of the original image, the resized image and the padded network input."""

    ori_hw: tuple[int, int]
    img_hw: tuple[int, int]
    input_hw: tuple[int, int]

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


def valid_cells(feat_hw: tuple[int, int], geom: Geometry) -> tuple[int, int]:
    """How many rows and columns of a map cover the resized image (the rest covers padding)."""
    out = []
    for cells, img, inp in zip(feat_hw, geom.img_hw, geom.input_hw, strict=True):
        stride = feature_stride(inp, cells)
        out.append(max(1, min(cells, math.ceil(img / stride - 1e-6))))
    return out[0], out[1]


def crop_valid(feat: np.ndarray, geom: Geometry) -> np.ndarray:
    """Crop a (C, H, W) map to the cells that cover the resized image."""
    h, w = valid_cells(feat.shape[-2:], geom)
    return feat[..., :h, :w]


def upsample_to_canvas(
    cropped: np.ndarray, feat_hw: tuple[int, int], geom: Geometry, canvas_hw: tuple[int, int]
) -> np.ndarray:
    """Bilinearly upsample a cropped (H, W) map so that it lines up with the original image drawn at ``canvas_hw``.

    ``feat_hw`` is the uncropped map's size (it fixes the stride); ``canvas_hw`` is the original image's size or
    the requested ``resize_shape``.
    """
    target = []
    for axis in range(2):
        stride = feature_stride(geom.input_hw[axis], feat_hw[axis])
        # cells * stride resized pixels -> original pixels -> canvas pixels
        extent = cropped.shape[axis] * stride * canvas_hw[axis] / geom.img_hw[axis]
        target.append(max(canvas_hw[axis], int(round(extent))))
    up = cv2.resize(cropped.astype(np.float32), (target[1], target[0]), interpolation=cv2.INTER_LINEAR)
    return up[: canvas_hw[0], : canvas_hw[1]]
