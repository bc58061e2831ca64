"""The named choices the map functions take. Plain enums with no imports, so the config schema can use them
without loading numpy or OpenCV at start-up."""

from __future__ import annotations

from enum import Enum

__all__ = ["DiffMode", "ReducerName"]


class ReducerName(str, Enum):
    """How a (C, H, W) map becomes something drawable."""

    pixel_wise_max = "pixel_wise_max"
    squeeze_mean = "squeeze_mean"
    select_max = "select_max"
    none = "none"
    gradcam = "gradcam"  # Grad-CAM of the detections ``target`` names (the model runs with gradients)
    eigencam = "eigencam"  # projection on the first principal component of the (H*W, C) activations


class DiffMode(str, Enum):
    """``abs``: |a - b|; ``signed``: a - b (diverging colormap centred on 0); ``relative``: |a - b| / (|a| + |b|)."""

    abs = "abs"
    signed = "signed"
    relative = "relative"
