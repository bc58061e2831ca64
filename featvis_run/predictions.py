"""What a model predicted on an image, in original-image pixels: plain arrays, shared by models, cache and drawing.

A detector predicts :class:`Detections` (boxes), a segmentor a :class:`SegmentationMap` (a class per pixel), a pose
model :class:`Keypoints` (one person's keypoints in one box), a classifier :class:`Classification` (its best classes
and their scores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Classification", "Detections", "Keypoints", "Predictions", "SegmentationMap"]


@dataclass(frozen=True)
class Detections:
    """Detector output in original-image pixels: boxes (N, 4) xyxy, scores (N,), labels (N,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = ()

    @classmethod
    def empty(cls, class_names: tuple[str, ...] = ()) -> Detections:
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), class_names)

    def above(self, thr: float) -> Detections:
        """The detections scoring at least ``thr``."""
        keep = self.scores >= thr
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names)

    def best(self, n: int | None) -> Detections:
        """The ``n`` highest-scoring detections (all when ``n`` is None or not smaller than their count)."""
        if n is None or len(self.scores) <= n:
            return self
        keep = np.sort(np.argsort(-np.asarray(self.scores), kind="stable")[: max(n, 0)])
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names)

    def summary(self, thr: float) -> dict[str, Any]:
        """The manifest's count: the boxes at or above ``thr`` (those drawn)."""
        return {"detections": int((self.scores >= thr).sum())}


@dataclass(frozen=True)
class SegmentationMap:
    """A segmentor's output in original-image pixels: a class index per pixel, (H, W), with the class names and
    their colours ((K, 3) RGB, as the dataset defines them; empty: colours are generated)."""

    labels: np.ndarray
    class_names: tuple[str, ...] = ()
    palette: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.uint8))

    def above(self, thr: float) -> SegmentationMap:
        """Every pixel has a class: a score threshold does not apply."""
        return self

    def present(self) -> list[tuple[int, float]]:
        """(class index, share of pixels) of every class predicted, largest share first."""
        counts = np.bincount(self.labels.ravel().astype(np.int64))
        order = np.argsort(-counts, kind="stable")
        total = max(1, int(self.labels.size))
        return [(int(i), float(counts[i]) / total) for i in order if counts[i] > 0]

    def summary(self, thr: float) -> dict[str, Any]:
        """The manifest's count: the classes predicted on the image."""
        return {"classes_predicted": len(self.present())}


@dataclass(frozen=True)
class Keypoints:
    """A top-down pose model's keypoints of one box in original-image pixels: ``points`` (K, 2) x, y and ``scores``
    (K,), with the keypoint names and the skeleton (pairs of keypoint indices) from the model's dataset metainfo."""

    points: np.ndarray
    scores: np.ndarray
    class_names: tuple[str, ...] = ()  # the keypoint names
    skeleton: tuple[tuple[int, int], ...] = ()

    def shown_mask(self, thr: float) -> np.ndarray:
        """(K,) bool: the keypoints drawn, finite and scoring at least ``thr``."""
        finite = np.isfinite(self.points).all(axis=1) & np.isfinite(self.scores)
        return finite & (np.where(finite, self.scores, -np.inf) >= thr)

    def above(self, thr: float) -> Keypoints:
        """The keypoints to draw: those scoring below ``thr`` (or not finite) become NaN, so that the indices of
        the skeleton still hold."""
        points = np.where(self.shown_mask(thr)[:, None], self.points, np.nan).astype(np.float32)
        return Keypoints(points, self.scores, self.class_names, self.skeleton)

    def summary(self, thr: float) -> dict[str, int]:
        """The manifest's count: the keypoints scoring at least ``thr`` (those drawn)."""
        return {"keypoints_drawn": int(self.shown_mask(thr).sum())}

    def record(self) -> dict[str, list]:
        """The manifest's ``predictions`` entry: every keypoint as [x, y, score] (null where not finite), the
        names and the skeleton."""

        def num(v: float) -> float | None:
            return float(v) if np.isfinite(v) else None

        rows = [[num(x), num(y), num(s)] for (x, y), s in zip(self.points.tolist(), self.scores.tolist(), strict=True)]
        return {"keypoints": rows, "names": list(self.class_names), "skeleton": [list(e) for e in self.skeleton]}


@dataclass(frozen=True)
class Classification:
    """A classifier's best classes: class indices (K,) and their scores (K,) (softmax probabilities), best first;
    ``explained``: the class indices a Grad-CAM explained (empty otherwise)."""

    indices: np.ndarray
    scores: np.ndarray
    class_names: tuple[str, ...] = ()
    explained: tuple[int, ...] = ()

    def above(self, thr: float) -> Classification:
        """A classifier's top classes are shown whatever their score: a threshold does not apply."""
        return self

    def label(self, index: int) -> str:
        """The name of class ``index`` (its number when the model has no names for it)."""
        return self.class_names[index] if 0 <= index < len(self.class_names) else str(index)

    def top(self) -> list[dict[str, Any]]:
        """The manifest's ``predictions.top``: ``{label, index, score}`` of each class, best first."""
        return [
            {"label": self.label(int(i)), "index": int(i), "score": float(s)}
            for i, s in zip(self.indices, self.scores, strict=True)
        ]

    def summary(self, thr: float) -> dict[str, Any]:
        """The manifest's counts: none (the top classes are the manifest's ``predictions.top``)."""
        return {}


Predictions = Detections | SegmentationMap | Keypoints | Classification
