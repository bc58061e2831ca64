"""Explanation metrics in a run (``analysis.metrics=true``): the map each image is scored on, the perturbed images
through the model, and the manifest's ``images[].metrics`` and run-wide means. The math is
:mod:`featvis_run.analysis.metrics`.

The scored map is a layer's ``fused`` map as the run saves it (``<image>/<layer>/fused.npy`` with
``output.save_arrays=maps``): Grad-CAM's fused map, and for EigenCAM the same fusion of its levels (each level's
map, negatives set to 0, upsampled onto the resized image, divided by its maximum, averaged), which such a run
draws as a ``fused`` level too. The first recorded layer is scored.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featvis_run.analysis.annotations import GroundTruth
from featvis_run.analysis.metrics import (
    Box,
    blurred_copy,
    box_mask,
    energy_in_boxes,
    matched_score,
    perturbation_curves,
    pointing_game,
    random_map,
    random_seed,
    saliency_on_image,
)
from featvis_run.errors import ConfigError, TargetNotFound
from featvis_run.experiments.draw import reduce_levels
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.cam import FUSED, fuse_cams, valid_region
from featvis_run.maps.geometry import Geometry, crop_valid
from featvis_run.maps.modes import ReducerName
from featvis_run.maps.targets import Target, parse_target, select_detections
from featvis_run.predictions import Detections, Predictions
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import Config
from featvis_run.store.outputs import safe_name

__all__ = [
    "KEYS",
    "MetricsPlan",
    "explained_boxes",
    "image_metrics",
    "metric_means",
    "model_detector",
    "run_image_metrics",
    "scored_map",
]

#: the metrics of an image, in the order they are shown
KEYS = ("pointing_game", "energy_in_boxes", "deletion_auc", "insertion_auc")


@dataclass(frozen=True)
class MetricsPlan:
    """What ``analysis.*`` asks: steps, the random baseline, and the target (EigenCAM has none of its own: the
    top-level ``target`` picks the detections whose score its map is measured against)."""

    reducer: str
    target: Target
    steps: int
    baseline: bool
    score_thr: float
    batch_size: int = 1

    @classmethod
    def from_config(cls, cfg: Config) -> MetricsPlan | None:
        """The plan, None when ``analysis.metrics`` is off; a ConfigError names an impossible setting."""
        a = cfg.analysis
        if a.steps < 1:
            raise ConfigError(f"analysis.steps={a.steps} must be at least 1 (the deletion/insertion curve's steps)")
        if a.baseline not in (None, "random"):
            raise ConfigError(f"analysis.baseline={a.baseline!r} is unknown; use random, or null for none")
        if not a.metrics:
            if a.baseline is not None:
                raise ConfigError(
                    "analysis.baseline=random scores a random map next to the explanation: add analysis.metrics=true"
                )
            return None
        reducer = ReducerName(cfg.reducer.name).value
        if reducer not in (ReducerName.gradcam.value, ReducerName.eigencam.value):
            raise ConfigError(
                f"analysis.metrics=true scores Grad-CAM and EigenCAM maps, but reducer={reducer}; add "
                "reducer=gradcam or reducer=eigencam"
            )
        return cls(
            reducer,
            parse_target(cfg.target),
            a.steps,
            a.baseline == "random",
            float(cfg.output.pred_score_thr),
            cfg.images.batch_size,
        )

    @property
    def passes_per_image(self) -> int:
        """Forward passes the metrics cost per image: 2 x steps, twice that with the random baseline."""
        return 2 * self.steps * (2 if self.baseline else 1)

    def cost_line(self) -> str:
        baseline = ", x2 for analysis.baseline=random" if self.baseline else ""
        return (
            f"explanation metrics: {self.passes_per_image} forward passes per image (2 x analysis.steps="
            f"{self.steps}{baseline}) on top of the run's own"
        )

    def extra_levels(
        self, features: Mapping[LevelKey, np.ndarray], geometry: Geometry, settings: DrawSettings
    ) -> dict[LevelKey, np.ndarray]:
        """EigenCAM: a ``fused`` level per layer (drawn and saved like Grad-CAM's); Grad-CAM has its own."""
        if self.reducer != ReducerName.eigencam.value:
            return {}
        reduced = reduce_levels(features, geometry, settings)
        by_layer: dict[str, list[np.ndarray]] = {}
        for key, red in reduced.items():
            full = np.zeros(features[key].shape[-2:], np.float32)
            rows, cols = valid_region(full.shape, geometry)
            full[rows, cols] = np.maximum(np.nan_to_num(red.maps[0], nan=0.0), 0.0)
            by_layer.setdefault(key.layer, []).append(full)
        return {LevelKey(layer, FUSED): fuse_cams(cams, geometry) for layer, cams in by_layer.items()}

    def explained(self, predictions: Predictions | None) -> Detections | None:
        """The detections whose score is explained: Grad-CAM's (already selected), or the target's among EigenCAM's
        predictions; None when the target matches none."""
        if not isinstance(predictions, Detections):
            return None
        if self.reducer == ReducerName.gradcam.value:
            return predictions
        try:
            keep = select_detections(
                self.target, predictions.scores, predictions.labels, predictions.class_names, self.score_thr
            )
        except TargetNotFound:
            return None
        return Detections(
            predictions.boxes[keep], predictions.scores[keep], predictions.labels[keep], predictions.class_names
        )


def scored_map(features: Mapping[LevelKey, np.ndarray], geometry: Geometry) -> tuple[str, np.ndarray] | None:
    """(layer, the saved fused map: valid cells, float32) of the first layer that has one."""
    for key, feat in features.items():
        if key.level == FUSED:
            return key.layer, np.asarray(crop_valid(feat, geometry)[0], np.float32)
    return None


def explained_boxes(explained: Mapping[str, Any]) -> list[tuple[Box, str, float]]:
    """(box, class, score) of each explained detection, as the manifest's ``explained`` entry records them."""
    return [(tuple(d["box"]), d["class"], float(d["score"])) for d in explained["detections"]]


def _scores(
    detect: Callable[[list[np.ndarray]], list[Detections]], explained: Sequence[tuple[Box, str]], batch_size: int
) -> Callable[[list[np.ndarray]], list[float]]:
    def score(images: list[np.ndarray]) -> list[float]:
        out = []
        for i in range(0, len(images), batch_size):
            for dets in detect(images[i : i + batch_size]):
                names = dets.class_names
                found = [
                    (
                        tuple(float(v) for v in box),
                        names[int(lab)] if 0 <= int(lab) < len(names) else str(int(lab)),
                        float(s),
                    )
                    for box, s, lab in zip(dets.boxes, dets.scores, dets.labels, strict=True)
                ]
                out.append(matched_score(explained, found))
        return out

    return score


def image_metrics(
    plan: MetricsPlan,
    image_id: str,
    image: np.ndarray,
    saved: np.ndarray,
    explained: Mapping[str, Any],
    truth: GroundTruth | None,
    detect: Callable[[list[np.ndarray]], list[Detections]],
) -> tuple[dict[str, Any], list[str]]:
    """One image's ``metrics`` entry and notes.

    Args:
        plan: the metrics plan.
        image_id: the image's id (names it in notes; seeds its random map).
        image: the original BGR image.
        saved: the saved fused map (valid cells).
        explained: the manifest's ``explained`` entry (target, detections with class, score, box).
        truth: the image's annotations, if any.
        detect: the model's detections on a list of images (one forward pass per call).
    """
    dets = explained_boxes(explained)
    classes = sorted({label for _, label, _ in dets})
    notes: list[str] = []
    if truth is not None:
        boxes = [b for b, label in zip(truth.boxes, truth.labels, strict=True) if label in classes]
        source = "annotations"
        if not boxes:
            notes.append(
                f"{image_id}: no annotated box of {', '.join(classes)}: pointing_game and energy_in_boxes are null"
            )
    else:
        boxes, source = [b for b, _, _ in dets], "detections"
    hw = image.shape[:2]
    mask = box_mask(hw, boxes) if boxes else None
    score = _scores(detect, [(b, label) for b, label, _ in dets], plan.batch_size)
    unperturbed = sum(s for _, _, s in dets)
    blurred = blurred_copy(image)

    def measure(saliency: np.ndarray) -> dict[str, Any]:
        curves = perturbation_curves(image, saliency, score, unperturbed, plan.steps, blurred)
        return {
            "pointing_game": pointing_game(saliency, mask) if mask is not None else None,
            "energy_in_boxes": energy_in_boxes(saliency, mask) if mask is not None else None,
            "deletion_auc": curves.deletion_auc,
            "insertion_auc": curves.insertion_auc,
            "deletion_curve": [round(v, 6) for v in curves.deletion],
            "insertion_curve": [round(v, 6) for v in curves.insertion],
        }

    entry = {**measure(saliency_on_image(saved, hw)), "boxes": source, "classes": classes, "steps": plan.steps}
    if plan.baseline:
        seed = random_seed(image_id)
        entry["random"] = {**measure(saliency_on_image(random_map(saved.shape, seed), hw)), "seed": seed}
    return entry, notes


def metric_means(images: Sequence[Any], layer: str | None) -> dict[str, Any] | None:
    """The manifest's run-wide ``metrics`` block: the mean of each metric over the images that have it (and of the
    random baseline's); None when no image has metrics."""
    scored = [im.metrics for im in images if getattr(im, "metrics", None)]
    if not scored:
        return None

    def means(entries: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key in KEYS:
            values = [e[key] for e in entries if e.get(key) is not None]
            out[key] = sum(values) / len(values) if values else None
        return out

    block: dict[str, Any] = {"layer": layer, "images": len(scored), "steps": scored[0]["steps"], **means(scored)}
    randoms = [m["random"] for m in scored if "random" in m]
    if randoms:
        block["random"] = means(randoms)
    return block


def model_detector(source: Any) -> Callable[[list[np.ndarray]], list[Detections]]:
    """The detections of a feature source's model on a list of BGR images (one forward pass, no recorders)."""
    from featvis_run.models.registry import run_batch

    def detect(images: list[np.ndarray]) -> list[Detections]:
        results = run_batch(source.model(), images)
        return [r.predictions if isinstance(r.predictions, Detections) else Detections.empty() for r in results]

    return detect


def run_image_metrics(
    plan: MetricsPlan,
    settings: DrawSettings,
    source: Any,
    im: Any,
    predictions: Predictions | None,
    features: Mapping[LevelKey, np.ndarray],
    geometry: Geometry,
    truth: GroundTruth | None,
) -> tuple[dict[str, Any], list[str]]:
    """An image of a run: its ``metrics`` entry (with EigenCAM's ``explained`` entry) and notes; nothing, with a
    note, when the target matches no detection of the image."""
    from featvis_run.experiments.explain import explained_record

    found = scored_map(features, geometry)
    if found is None:
        return {}, [f"{im.image_id}: no explanation metrics: no fused map to score"]
    explained = plan.explained(predictions)
    if explained is None or not len(explained.scores):
        return {}, [f"{im.image_id}: no explanation metrics: target={plan.target.text} matches no detection here"]
    layer, saved = found
    record = explained_record(dataclasses.replace(settings, target=plan.target), explained)
    started = time.perf_counter()
    entry, notes = image_metrics(plan, im.image_id, im.array, saved, record["explained"], truth, model_detector(source))
    source.timer.add("metrics", started)
    map_file = f"{safe_name(im.image_id)}/{safe_name(layer)}/{safe_name(FUSED)}.npy"
    out: dict[str, Any] = {"metrics": {"layer": layer, "map_file": map_file if settings.save_maps else None, **entry}}
    if settings.target is None:  # EigenCAM: which detections its map was measured against
        out.update(record)
    return out, notes
