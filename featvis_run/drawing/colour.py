"""Colour-mapping maps and blending them on images. All images are uint8 BGR (OpenCV's order).

Maps are min-max scaled per map to 0..255 and colour-mapped (JET by default), as MMEngine's
``Visualizer.draw_featmap`` does, or mapped over a given ``value_range`` (lo, hi): ``floor(255 (v - lo) / (hi - lo))``
with values outside clipped, so maps drawn with the same range are comparable by colour. Non-finite cells (NaN,
infinities) are left out of the scaling and painted :data:`MISSING` grey, so they are never mistaken for a value.
"""

from __future__ import annotations

import cv2
import numpy as np

from featvis_run.errors import ConfigError

__all__ = [
    "MISSING",
    "blend",
    "colorize",
    "colorize_signed",
    "colormap_id",
    "colormap_lut",
    "finite_range",
    "paint_missing",
    "to_uint8",
]

#: BGR colour of cells without a finite value.
MISSING = (128, 128, 128)


def colormap_id(name: str) -> int:
    """OpenCV's colormap constant for ``name`` (case-insensitive), or a ConfigError listing the valid names."""
    code = getattr(cv2, f"COLORMAP_{name.upper()}", None)
    if code is None:
        valid = sorted(k[len("COLORMAP_") :].lower() for k in dir(cv2) if k.startswith("COLORMAP_"))
        raise ConfigError(f"output.colormap={name!r} is not an OpenCV colormap; choose one of {', '.join(valid)}")
    return int(code)


def finite_range(a: np.ndarray) -> tuple[float, float] | None:
    """(min, max) of the finite values of ``a``; None when it has none."""
    finite = a[np.isfinite(a)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


def to_uint8(a: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Min-max scale to 0..255 over the whole array (cv2.NORM_MINMAX, truncated as MMEngine does); the range is
    taken over finite values, and non-finite ones become 0 (see :func:`paint_missing`). With ``value_range``
    (lo, hi): ``floor(255 (v - lo) / (hi - lo))``, values outside clipped (all 0 when hi <= lo)."""
    if value_range is not None:
        lo, hi = float(value_range[0]), float(value_range[1])
        v = np.where(np.isfinite(a), a, lo).astype(np.float64)
        if not hi > lo:
            return np.zeros(a.shape, np.uint8)
        return np.floor(np.clip((v - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)
    a = a.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, a[finite].min() if finite.any() else 0.0).astype(np.float32)
    norm = cv2.normalize(a, None, 0, 255, cv2.NORM_MINMAX)
    return np.asarray(norm, dtype=np.uint8)


def paint_missing(picture: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Paint the pixels of ``picture`` whose ``values`` are not finite in :data:`MISSING` grey (in place)."""
    missing = ~np.isfinite(values)
    if missing.any():
        picture[missing] = MISSING
    return picture


def colorize(map2d: np.ndarray, colormap: str = "jet", value_range: tuple[float, float] | None = None) -> np.ndarray:
    """A (H, W) float map as a colour-mapped BGR image, min-max scaled (or over ``value_range``); non-finite cells
    grey."""
    return paint_missing(cv2.applyColorMap(to_uint8(map2d, value_range), colormap_id(colormap)), map2d)


def colormap_lut(colormap: str, signed: bool = False) -> np.ndarray:
    """The 256 BGR colours (256 x 3, index = scaled value) of ``colormap``, or of the signed diverging map."""
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    lut = _coolwarm_lut() if signed else colormap_id(colormap)
    return cv2.applyColorMap(ramp, lut).reshape(256, 3)


def _coolwarm_lut() -> np.ndarray:
    """A blue-white-red diverging lookup table (256 x 1 x 3, BGR) for signed maps."""
    stops = np.array([[59, 76, 192], [221, 221, 221], [180, 4, 38]], np.float32)  # RGB: blue, grey-white, red
    t = np.linspace(0.0, 2.0, 256)[:, None]
    rgb = np.where(t <= 1.0, stops[0] + (stops[1] - stops[0]) * t, stops[1] + (stops[2] - stops[1]) * (t - 1.0))
    return np.ascontiguousarray(rgb[:, ::-1].round().astype(np.uint8).reshape(256, 1, 3))


def colorize_signed(map2d: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """A signed (H, W) map with a diverging colormap centred on 0: blue < 0 < red, scaled by max |value| (or by
    max(|lo|, |hi|) of ``value_range``, values beyond clipped), so 0 stays the middle colour."""
    finite = np.isfinite(map2d)
    if value_range is not None:
        peak = max(abs(float(value_range[0])), abs(float(value_range[1])))
    else:
        peak = float(np.abs(map2d[finite]).max()) if finite.any() else 0.0
    scaled = np.where(finite, map2d, 0.0) / peak if peak > 0 else np.zeros_like(map2d)
    u8 = np.clip(np.round(127.5 + 127.5 * scaled), 0, 255).astype(np.uint8)
    return paint_missing(cv2.applyColorMap(u8, _coolwarm_lut()), map2d)


def blend(image: np.ndarray, heat: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * image + alpha * heat``, as ``cv2.addWeighted``."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"output.alpha={alpha} must be within [0, 1]")
    return cv2.addWeighted(image, 1.0 - alpha, heat, alpha, 0)
