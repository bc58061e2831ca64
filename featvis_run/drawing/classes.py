"""Writing a classifier's top classes and scores on a picture (the role a detector's boxes play)."""

from __future__ import annotations

import cv2
import numpy as np

from featvis_run.predictions import Classification

__all__ = ["classification_lines", "draw_classification"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def classification_lines(cls: Classification, limit: int = 5) -> list[str]:
    """``"<label> <score>"`` of the best ``limit`` classes, best first (long labels cut at 32 characters)."""
    lines = []
    for entry in cls.top()[:limit]:
        label = entry["label"] if len(entry["label"]) <= 32 else entry["label"][:31] + "~"
        lines.append(f"{label} {entry['score']:.2f}")
    return lines


def draw_classification(img: np.ndarray, cls: Classification, limit: int = 5) -> np.ndarray:
    """``img`` with the top classes written in its top-left corner, white on a dark band (a copy)."""
    out = img.copy()
    lines = classification_lines(cls, limit)
    if not lines:
        return out
    h, w = out.shape[:2]
    scale = max(0.35, min(0.6, w / 700))
    sizes = [cv2.getTextSize(line, _FONT, scale, 1)[0] for line in lines]
    line_h = max(th for _, th in sizes) + 6
    band_w = min(w, max(tw for tw, _ in sizes) + 8)
    band_h = min(h, line_h * len(lines) + 4)
    out[:band_h, :band_w] = (out[:band_h, :band_w].astype(np.float32) * 0.35).astype(np.uint8)
    for i, line in enumerate(lines):
        y = 2 + line_h * (i + 1) - 4
        if y > h:
            break
        cv2.putText(out, line, (4, y), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
