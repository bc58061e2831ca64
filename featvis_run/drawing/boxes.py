"""Drawing a detector's boxes with class names and scores on a picture."""

from __future__ import annotations

import cv2
import numpy as np

from featvis_run.predictions import Detections

__all__ = ["draw_detections"]


def draw_detections(img: np.ndarray, dets: Detections, scale_yx: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Draw boxes (original-image pixels, scaled by ``scale_yx`` to this canvas) with class and score.

    Lowest scores first, so where boxes overlap (RetinaNet keeps one box per class) the best label is on top."""
    out = img.copy()
    sy, sx = scale_yx
    h, w = img.shape[:2]
    # far-off corners (a random head's boxes) are clipped to a band around the picture: OpenCV needs int32 points
    lo, hi = np.array([-w, -h, -w, -h], np.float64), np.array([2 * w, 2 * h, 2 * w, 2 * h], np.float64)
    order = np.argsort(np.asarray(dets.scores), kind="stable")
    for box, score, label in zip(dets.boxes[order], dets.scores[order], dets.labels[order], strict=True):
        scaled = np.clip(np.asarray(box, np.float64) * np.array([sx, sy, sx, sy]), lo, hi)
        x1, y1, x2, y2 = (int(round(v)) for v in scaled)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), 2)
        name = dets.class_names[label] if 0 <= label < len(dets.class_names) else str(int(label))
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + base + 2)
        cv2.rectangle(out, (x1, ty - th - base - 2), (x1 + tw + 2, ty), (0, 255, 0), -1)
        cv2.putText(out, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return out
