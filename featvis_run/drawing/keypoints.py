"""Drawing a pose model's keypoints and skeleton on a picture. Pure, no file I/O."""

from __future__ import annotations

import cv2
import numpy as np

from featvis_run.predictions import Keypoints

__all__ = ["KEYPOINT_COLOUR", "SKELETON_COLOUR", "draw_keypoints", "keypoint_pixels"]

KEYPOINT_COLOUR = (0, 255, 255)  # BGR yellow dots, ringed in black
SKELETON_COLOUR = (0, 200, 0)  # BGR green limbs


def keypoint_pixels(points: np.ndarray, scale_yx: tuple[float, float]) -> list[tuple[int, int] | None]:
    """Each keypoint's (x, y) in original-image pixels as the nearest pixel of a canvas scaled by ``scale_yx``
    (None where the point is not finite: not drawn)."""
    out: list[tuple[int, int] | None] = []
    for x, y in np.asarray(points, np.float64).reshape(-1, 2):
        if not (np.isfinite(x) and np.isfinite(y)):
            out.append(None)
            continue
        out.append((int(np.floor(x * scale_yx[1])), int(np.floor(y * scale_yx[0]))))
    return out


def draw_keypoints(img: np.ndarray, kps: Keypoints, scale_yx: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Draw the skeleton's limbs between drawn keypoints, then the keypoints as dots (keypoints that are NaN, such
    as those below the score threshold, are left out with their limbs).

    Args:
        img: the BGR picture (the original image's size times ``scale_yx``).
        kps: keypoints in original-image pixels.
        scale_yx: canvas pixels per original pixel.
    """
    out = img.copy()
    h, w = out.shape[:2]
    radius = max(2, round(min(h, w) / 120))
    pixels = keypoint_pixels(kps.points, scale_yx)
    for i, j in kps.skeleton:
        if 0 <= i < len(pixels) and 0 <= j < len(pixels) and pixels[i] is not None and pixels[j] is not None:
            cv2.line(out, pixels[i], pixels[j], SKELETON_COLOUR, max(1, radius // 2), cv2.LINE_AA)
    for p in pixels:
        if p is not None:
            cv2.circle(out, p, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(out, p, radius, KEYPOINT_COLOUR, -1, cv2.LINE_AA)
    return out
