"""What Grad-CAM adds to an image run: its feature source, and the manifest's record of what was explained."""

from __future__ import annotations

from typing import Any

from featvis_run.experiments.settings import DrawSettings
from featvis_run.models.source import FeatureSource
from featvis_run.predictions import Classification, Detections, Predictions
from featvis_run.schema import Config
from featvis_run.store.cache import ActivationCache
from featvis_run.timing import Timer

__all__ = ["explained_record", "feature_source"]


def feature_source(cfg: Config, settings: DrawSettings, cache: ActivationCache, timer: Timer) -> FeatureSource:
    """Where a run's maps come from: Grad-CAMs of ``target`` with ``reducer=gradcam``, else recorded features."""
    if settings.target is None:
        return FeatureSource(cfg.model, cfg.recorder, cache, timer)
    from featvis_run.models.cam_source import CamSource

    return CamSource(cfg.model, cfg.recorder, cache, timer, settings.target, settings.pred_score_thr)


def explained_record(settings: DrawSettings, predictions: Predictions | None) -> dict[str, Any]:
    """The manifest's ``explained`` entry of an image (Grad-CAM runs; empty otherwise): the target, and the class,
    score and box (original pixels, x1 y1 x2 y2) of each detection whose logit was explained, highest first; for a
    classifier, the class (label and index) whose logit was explained."""
    if settings.target is not None and isinstance(predictions, Classification):
        classes = [{"label": predictions.label(i), "index": int(i)} for i in predictions.explained]
        return {"explained": {"target": settings.target.text, "classes": classes}}
    if settings.target is None or not isinstance(predictions, Detections):
        return {}
    names = predictions.class_names
    detections = [
        {
            "class": names[int(label)] if 0 <= int(label) < len(names) else str(int(label)),
            "score": round(float(score), 6),
            "box": [round(float(v), 2) for v in box],
        }
        for box, score, label in zip(predictions.boxes, predictions.scores, predictions.labels, strict=True)
    ]
    return {"explained": {"target": settings.target.text, "detections": detections}}
