"""Explanation metrics of a saliency map (a CAM laid on the original image). Pure functions, no I/O, no model.

- The map: the saved array (a layer's fused map at the resized image's resolution) resized bilinearly to the
  original image (OpenCV ``INTER_LINEAR``, pixel centres aligned), NaN and negative values set to 0.
- A pixel (row r, column c) lies in a box [x1, y1, x2, y2] when its centre does: ``x1 <= c + 0.5 < x2`` and
  ``y1 <= r + 0.5 < y2``; the target region is the union of the target boxes.
- ``pointing_game``: 1 when the map's maximum (the first in row-major order if several) lies in the region, else 0;
  a map with no positive value scores 0.
- ``energy_in_boxes``: the map's sum inside the region over its total sum (0 for a map with no positive value).
- ``deletion_auc`` / ``insertion_auc``: pixels ranked by decreasing map value (ties in row-major order); at step
  k = 0..steps the first ``floor(k * N / steps)`` of the N pixels are replaced by a blurred copy (deletion), or
  revealed on the blurred copy (insertion); the score of each image over the unperturbed score gives a curve of
  steps + 1 points at fractions k / steps, and its area is the trapezoid rule over [0, 1]. Deletion's first
  point (nothing removed) and insertion's last (everything revealed) are the unperturbed image: 1 by definition,
  so a curve costs ``steps`` forward passes.
- The explained score: the sum, over the explained detections, of the score of the detection of the same class
  that overlaps it most (IoU >= 0.5) on the perturbed image, 0 when none does.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "BLUR_SIGMA",
    "Curves",
    "blurred_copy",
    "box_mask",
    "energy_in_boxes",
    "iou",
    "matched_score",
    "perturbation_curves",
    "pointing_game",
    "random_map",
    "random_seed",
    "saliency_on_image",
    "step_counts",
    "trapezoid_auc",
]

#: the blurred copy: a Gaussian blur with sigma = this fraction of the image's longer side
BLUR_SIGMA = 0.05

Box = tuple[float, float, float, float]


def saliency_on_image(saved: np.ndarray, ori_hw: tuple[int, int]) -> np.ndarray:
    """A saved (h, w) map (covering the resized image) at the original image's size: bilinear, NaN and negative
    values set to 0; float64."""
    h, w = ori_hw
    up = cv2.resize(np.asarray(saved, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    up = np.nan_to_num(up.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.maximum(up, 0.0)


def box_mask(hw: tuple[int, int], boxes: Sequence[Box]) -> np.ndarray:
    """(H, W) bool: the pixels whose centre lies in any of the (x1, y1, x2, y2) boxes."""
    h, w = hw
    mask = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in boxes:
        c0, c1 = (min(w, max(0, int(np.ceil(v - 0.5)))) for v in (x1, x2))
        r0, r1 = (min(h, max(0, int(np.ceil(v - 0.5)))) for v in (y1, y2))
        mask[r0:r1, c0:c1] = True
    return mask


def pointing_game(saliency: np.ndarray, mask: np.ndarray) -> int:
    """1 when the map's maximum (first in row-major order) lies in ``mask``, else 0 (0 for a map without a
    positive value)."""
    flat = saliency.reshape(-1)
    if not flat.size or not flat.max() > 0:
        return 0
    return int(mask.reshape(-1)[int(np.argmax(flat))])


def energy_in_boxes(saliency: np.ndarray, mask: np.ndarray) -> float:
    """The map's sum inside ``mask`` over its total sum (0 for a map without a positive value)."""
    total = float(saliency.sum(dtype=np.float64))
    if not total > 0:
        return 0.0
    return float(saliency[mask].sum(dtype=np.float64)) / total


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes (0 when both are empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def matched_score(
    explained: Sequence[tuple[Box, str]],
    found: Sequence[tuple[Box, str, float]],
    min_iou: float = 0.5,
) -> float:
    """The explained score on a perturbed image: for each explained (box, class), the score of the ``found``
    (box, class, score) detection of that class overlapping it most, if that IoU is >= ``min_iou``; summed."""
    total = 0.0
    for box, label in explained:
        best, score = -1.0, 0.0
        for other, other_label, other_score in found:
            if other_label != label:
                continue
            overlap = iou(box, other)
            if overlap > best:
                best, score = overlap, float(other_score)
        if best >= min_iou:
            total += score
    return total


def blurred_copy(image: np.ndarray) -> np.ndarray:
    """The image blurred with a Gaussian of sigma ``BLUR_SIGMA`` x its longer side (what deleted pixels become)."""
    sigma = BLUR_SIGMA * max(image.shape[:2])
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def step_counts(n_pixels: int, steps: int) -> list[int]:
    """Pixels removed (or revealed) at each step k = 0..steps: ``floor(k * n_pixels / steps)``."""
    if steps < 1:
        raise ValueError(f"steps={steps} must be at least 1")
    return [k * n_pixels // steps for k in range(steps + 1)]


def trapezoid_auc(values: Sequence[float]) -> float:
    """The area under a curve sampled at equally spaced fractions 0, 1/n, ..., 1 (n + 1 values), trapezoid rule."""
    v = [float(x) for x in values]
    if len(v) < 2:
        raise ValueError("a curve needs at least 2 points")
    return (sum(v) - (v[0] + v[-1]) / 2) / (len(v) - 1)


@dataclass(frozen=True)
class Curves:
    """Deletion and insertion curves (score over the unperturbed score at fractions 0, 1/steps, ..., 1) and their
    areas."""

    deletion: tuple[float, ...]
    insertion: tuple[float, ...]

    @property
    def deletion_auc(self) -> float:
        return trapezoid_auc(self.deletion)

    @property
    def insertion_auc(self) -> float:
        return trapezoid_auc(self.insertion)


def perturbation_curves(
    image: np.ndarray,
    saliency: np.ndarray,
    score: Callable[[list[np.ndarray]], list[float]],
    unperturbed: float,
    steps: int,
    blurred: np.ndarray | None = None,
) -> Curves:
    """Deletion and insertion curves of ``saliency`` (H, W) on ``image`` (H, W, C).

    Args:
        image: the original image.
        saliency: the map at the image's size (see :func:`saliency_on_image`).
        score: the explained score of each of a list of images (called once, with 2 x ``steps`` images).
        unperturbed: the explained score of ``image`` itself (the curves are divided by it; must be > 0).
        steps: steps from no pixel to every pixel.
        blurred: the blurred copy (default :func:`blurred_copy`).
    """
    if saliency.shape != image.shape[:2]:
        raise ValueError(f"the map {saliency.shape} must be the image's size {image.shape[:2]}")
    if not unperturbed > 0:
        raise ValueError(f"the unperturbed score must be positive, got {unperturbed}")
    blurred = blurred_copy(image) if blurred is None else blurred
    h, w = saliency.shape
    order = np.argsort(-saliency.reshape(-1), kind="stable")
    counts = step_counts(h * w, steps)
    flat_image, flat_blur = image.reshape(h * w, -1), blurred.reshape(h * w, -1)
    images = []
    for k in range(1, steps + 1):  # deletion: the first counts[k] pixels blurred
        out = flat_image.copy()
        out[order[: counts[k]]] = flat_blur[order[: counts[k]]]
        images.append(out.reshape(image.shape))
    for k in range(steps):  # insertion: the first counts[k] pixels revealed
        out = flat_blur.copy()
        out[order[: counts[k]]] = flat_image[order[: counts[k]]]
        images.append(out.reshape(image.shape))
    scores = [s / unperturbed for s in score(images)]
    if len(scores) != 2 * steps:
        raise ValueError(f"the score function returned {len(scores)} scores for {2 * steps} images")
    return Curves((1.0, *scores[:steps]), (*scores[steps:], 1.0))


def random_seed(image_id: str) -> int:
    """The seed of an image's random baseline map: CRC-32 of ``featvis-random:<image id>``."""
    return zlib.crc32(f"featvis-random:{image_id}".encode())


def random_map(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A random baseline map: uniform in [0, 1), float32, from ``numpy.random.default_rng(seed)``."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)
