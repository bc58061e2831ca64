"""What a model predicted on an image, in original-image pixels: plain arrays, shared by models, cache and drawing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Detections"]


@dataclass(frozen=True)
class Detections:
    """Detector output in original-image pixels: boxes (N, 4) xyxy, scores (N,), labels (N,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = ()

    def above(self, thr: float) -> Detections:
        """The detections scoring at least ``thr``."""
        keep = self.scores >= thr
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names)
