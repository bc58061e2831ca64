"""The named choices the map functions take. Plain enums with no imports, so the config schema can use them
without loading numpy or OpenCV at start-up."""

from __future__ import annotations

from enum import Enum

__all__ = ["ArrayExport", "DiffMode", "PicturesMode", "ReducerName", "ScaleMode"]


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


class ScaleMode(str, Enum):
    """Which maps share one colour range: each map alone, all levels of an image, one level across the run, the
    whole run, or a range given in the config."""

    per_map = "per_map"
    per_image = "per_image"
    per_level = "per_level"
    per_run = "per_run"
    fixed = "fixed"


class ArrayExport(str, Enum):
    """Which arrays are saved next to each picture: none, the drawn 2-D map, the recorded features, or both."""

    none = "none"
    maps = "maps"
    features = "features"
    both = "both"


class PicturesMode(str, Enum):
    """What a run stores of each map: ``composite`` image-sized pictures (PNG/JPEG, for slides and papers),
    ``maps`` the reduced map at feature resolution (``<level>.npy``) and the input image once (``image.jpg``),
    which the report page composites, or ``both``."""

    composite = "composite"
    maps = "maps"
    both = "both"
