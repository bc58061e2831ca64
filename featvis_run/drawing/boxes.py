"""Drawing a detector's boxes with class names and scores on a picture.

Labels stay whole: each is moved inside the picture (never cut at an edge), and a label that would overlap a better
one is moved below its box or, if that overlaps too, left out (its box is still drawn), so no label is partly
painted over and no stray characters remain."""

from __future__ import annotations

import cv2
import numpy as np

from featvis_run.predictions import Detections

__all__ = ["GT_COLOUR", "draw_detections", "draw_ground_truth", "label_boxes"]

#: BGR colour of ground-truth boxes (magenta: in no colormap the maps use, and not the predictions' green)
GT_COLOUR = (255, 0, 255)

_FONT, _SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 (inclusive)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def _inside(x: int, y_top: int, tw: int, th: int, w: int, h: int) -> Rect:
    """A ``tw`` x ``th`` rectangle at (x, y_top) shifted to lie inside a w x h picture."""
    x = min(max(x, 0), max(w - tw, 0))
    y_top = min(max(y_top, 0), max(h - th, 0))
    return (x, y_top, x + tw - 1, y_top + th - 1)


def label_boxes(
    corners: list[tuple[int, int, int, int]], sizes: list[tuple[int, int]], hw: tuple[int, int]
) -> list[Rect | None]:
    """Where each label goes, best box first: above the box's top-left corner, else below its bottom-left corner,
    moved inside the picture; None when both places overlap a label placed before.

    Args:
        corners: each box's (x1, y1, x2, y2) on the picture, in drawing priority (best first).
        sizes: each label's (width, height) in pixels, with its padding.
        hw: the picture's (height, width).
    """
    h, w = hw
    placed: list[Rect] = []
    out: list[Rect | None] = []
    for (x1, y1, _, y2), (tw, th) in zip(corners, sizes, strict=True):
        spot = None
        for y_top in (y1 - th, y2 + 1):
            rect = _inside(x1, y_top, tw, th, w, h)
            if not any(_overlaps(rect, other) for other in placed):
                spot = rect
                break
        if spot is not None:
            placed.append(spot)
        out.append(spot)
    return out


def draw_detections(img: np.ndarray, dets: Detections, scale_yx: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Draw boxes (original-image pixels, scaled by ``scale_yx`` to this canvas) with class and score.

    Boxes are drawn lowest score first (the best on top where they overlap), then the labels, best first, each
    whole and inside the picture (see :func:`label_boxes`)."""
    out = img.copy()
    sy, sx = scale_yx
    h, w = img.shape[:2]
    # far-off corners (a random head's boxes) are clipped to a band around the picture: OpenCV needs int32 points
    lo, hi = np.array([-w, -h, -w, -h], np.float64), np.array([2 * w, 2 * h, 2 * w, 2 * h], np.float64)
    order = np.argsort(-np.asarray(dets.scores), kind="stable")  # best first
    corners, texts, sizes = [], [], []
    for i in order:
        scaled = np.clip(np.asarray(dets.boxes[i], np.float64) * np.array([sx, sy, sx, sy]), lo, hi)
        corners.append(tuple(int(round(v)) for v in scaled))
        label = int(dets.labels[i])
        name = dets.class_names[label] if 0 <= label < len(dets.class_names) else str(label)
        text = f"{name} {float(dets.scores[i]):.2f}"
        (tw, th), base = cv2.getTextSize(text, _FONT, _SCALE, 1)
        texts.append((text, th, base))
        sizes.append((tw + 3, th + base + 3))
    for x1, y1, x2, y2 in reversed(corners):
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), 2)
    for spot, (text, _, base) in zip(label_boxes(corners, sizes, (h, w)), texts, strict=True):
        if spot is None:
            continue
        x1, y1, x2, y2 = spot
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), -1)
        cv2.putText(out, text, (x1 + 1, y2 - base), _FONT, _SCALE, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def draw_ground_truth(img: np.ndarray, truth: Detections, scale_yx: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Draw annotated boxes (original-image pixels, scaled by ``scale_yx``) in :data:`GT_COLOUR`, 2 px, unlabelled
    (x2, y2 exclusive: the line's outer edge is the box's last pixel)."""
    out = img.copy()
    sy, sx = scale_yx
    h, w = img.shape[:2]
    lo, hi = np.array([-w, -h, -w, -h], np.float64), np.array([2 * w, 2 * h, 2 * w, 2 * h], np.float64)
    for box in truth.boxes:
        x1, y1, x2, y2 = (int(round(v)) for v in np.clip(np.asarray(box, np.float64) * [sx, sy, sx, sy], lo, hi))
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), GT_COLOUR, 2)
    return out
