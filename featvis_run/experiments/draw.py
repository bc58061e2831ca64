"""Drawing every recorded level of one image: crop to the valid cells, (standardize,) reduce, pick the colour range,
render, write the picture (and the arrays asked for)."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.drawing.layout import caption_band
from featvis_run.drawing.render import render_map_scaled, with_colorbar
from featvis_run.experiments.inputs import InputImage
from featvis_run.experiments.settings import DrawSettings
from featvis_run.experiments.stored import map_caption, map_scales
from featvis_run.maps.cam import FUSED
from featvis_run.maps.geometry import Geometry, cell_placement, crop_valid, geometry_record, valid_cells
from featvis_run.maps.modes import ReducerName
from featvis_run.maps.reduce import ReducedMap, reduce_channels, standardize
from featvis_run.maps.scales import RangeBook, image_ranges
from featvis_run.predictions import Classification, Detections, Keypoints, Predictions, SegmentationMap
from featvis_run.recording.levels import LevelKey
from featvis_run.store.manifest import ImageRecord, MapRecord
from featvis_run.store.outputs import safe_name, write_array, write_image

__all__ = [
    "add_run_stats",
    "box_cap_note",
    "draw_levels",
    "finite_stats",
    "image_record",
    "keypoint_channel_names",
    "level_jobs",
    "non_finite_notes",
    "prediction_counts",
    "prediction_record",
    "reduce_levels",
    "save_arrays",
]


def prediction_counts(predictions: Predictions | None, settings: DrawSettings) -> dict[str, Any]:
    """The manifest's count of an image's predictions (boxes above the threshold and those drawn, classes
    predicted, keypoints drawn); none if it has none (the predictions themselves: :func:`prediction_record`)."""
    if predictions is None:
        return {}
    counts: dict[str, Any] = dict(predictions.summary(settings.pred_score_thr))
    if isinstance(predictions, Detections):
        shown = settings.shown(predictions)
        counts["boxes_drawn"] = len(shown.scores) if isinstance(shown, Detections) else 0
    return counts


def prediction_record(predictions: Predictions | None, settings: DrawSettings) -> dict[str, Any] | None:
    """The manifest's ``predictions`` of an image, in original pixels: a detector's boxes at or above
    ``output.pred_score_thr`` (Grad-CAM: the explained ones), the best ``output.max_boxes`` by score; a segmentor's
    classes present, largest share first; a pose model's keypoints, names and skeleton. None without predictions."""
    if isinstance(predictions, Detections):
        kept = predictions if settings.target is not None else predictions.above(settings.pred_score_thr)
        kept = kept.best(settings.render.max_boxes)
        names = kept.class_names
        boxes = [
            {
                "bbox": [round(float(v), 2) for v in box],
                "label": names[int(label)] if 0 <= int(label) < len(names) else str(int(label)),
                "score": round(float(score), 4),
            }
            for box, score, label in zip(kept.boxes, kept.scores, kept.labels, strict=True)
        ]
        return {"boxes": sorted(boxes, key=lambda b: -b["score"])}
    if isinstance(predictions, Keypoints):
        return predictions.record()
    if isinstance(predictions, Classification):
        return {"top": predictions.top()}
    if isinstance(predictions, SegmentationMap):
        names = predictions.class_names
        classes = [
            {"label": names[i] if i < len(names) else str(i), "index": i, "share": round(share, 4)}
            for i, share in predictions.present()
        ]
        return {"classes": classes}
    return None


def image_record(
    im: InputImage, geometry: Geometry, predictions: Predictions | None, settings: DrawSettings, **extra: Any
) -> ImageRecord:
    """The manifest's record of a drawn image: its path, sizes, id, geometry and predictions (``extra``: the
    counts, the explained target, stored photo, annotations, metrics)."""
    return ImageRecord(
        os.path.abspath(im.path),
        geometry.ori_hw,
        geometry.input_hw,
        id=im.image_id,
        geometry=geometry_record(geometry),
        predictions=prediction_record(predictions, settings),
        **extra,
    )


def box_cap_note(image_id: str, counts: Mapping[str, Any], max_boxes: int | None) -> str | None:
    """A note when ``output.max_boxes`` left some of an image's boxes out."""
    found, drawn = counts.get("detections"), counts.get("boxes_drawn")
    if found is None or drawn is None or drawn >= found or not drawn:
        return None
    return (
        f"{image_id}: drew the {drawn} best of {found} boxes at or above output.pred_score_thr "
        f"(output.max_boxes={max_boxes}; raise it, or null for all)"
    )


def finite_stats(maps: np.ndarray) -> dict[str, float | None]:
    """min, max and mean of the finite values of a drawn map (None when it has none)."""
    finite = maps[np.isfinite(maps)]
    if not finite.size:
        return {"min": None, "max": None, "mean": None}
    return {"min": float(finite.min()), "max": float(finite.max()), "mean": float(finite.mean(dtype=np.float64))}


def non_finite_notes(records: Sequence[MapRecord]) -> list[str]:
    """One loud note per layer/level whose recorded maps held NaN or infinite values."""
    found: dict[tuple[str, str], list[MapRecord]] = {}
    for r in records:
        if r.non_finite:
            found.setdefault((r.layer, r.level), []).append(r)
    return [
        f"NON-FINITE: {layer}/{level} held {sum(r.non_finite for r in rs)} NaN/infinite values in {len(rs)} image(s) "
        "(a diverged model or broken weights?); those cells are drawn grey and stats cover finite values only"
        for (layer, level), rs in found.items()
    ]


def reduce_levels(
    features: Mapping[LevelKey, np.ndarray], geometry: Geometry, settings: DrawSettings
) -> dict[LevelKey, ReducedMap]:
    """Every level cropped to its valid cells, standardized if asked, and reduced (an impossible request such as
    topk=-1 on 256 channels fails here, before anything is drawn)."""
    reduced = {}
    for key, feat in features.items():
        cropped = crop_valid(feat, geometry)
        if key.level == FUSED and settings.reducer == ReducerName.eigencam.value:  # fused EigenCAM: drawn as is
            reduced[key] = ReducedMap(cropped.astype(np.float32, copy=False), (), settings.reducer)
            continue
        if settings.use_norm:
            cropped = standardize(cropped)
        reduced[key] = reduce_channels(cropped, settings.reducer, settings.topk, where=f"{key.layer}/{key.level}")
    return reduced


def keypoint_channel_names(key: LevelKey, channels: int, predictions: Predictions | None) -> tuple[str, ...] | None:
    """The keypoint names that label a pose model's heatmap channels: a map of the ``head`` recorder with one channel
    per keypoint (``recorder=head``); None for every other map."""
    if key.layer != "head" or not isinstance(predictions, Keypoints) or len(predictions.class_names) != channels:
        return None
    return predictions.class_names


def add_run_stats(book: RangeBook, reduced: Mapping[LevelKey, ReducedMap]) -> None:
    """Count one image's reduced maps in a run's statistics pass (``output.scale=per_level/per_run``)."""
    for key, red in reduced.items():
        book.add(book.spec.group(key.level), red.maps)


def level_jobs(
    image_id: str,
    image: np.ndarray,
    features: dict[LevelKey, np.ndarray],
    geometry: Geometry,
    predictions: Predictions | None,
    settings: DrawSettings,
    out_dir: Path,
    run_ranges: Mapping[str, tuple[float, float] | None] | None = None,
    ground_truth: Detections | None = None,
) -> list[Callable[[], tuple[MapRecord, np.ndarray | None]]]:
    """The drawing of each (C, H, W) map of one image as a job that renders it, writes it under
    ``out_dir/<image>/<layer>/<level>.<fmt>`` (with its arrays) and returns its record with the picture (jobs can
    run in threads).

    Every level is reduced, and the colour ranges picked, before any is drawn.

    Args:
        image_id: the image's output folder name.
        image: the original BGR image.
        features: the recorded maps by level (uncropped).
        geometry: where the maps lie on the image.
        predictions: the model's predictions (drawn on single maps, see :meth:`DrawSettings.shown`).
        settings: how to reduce and draw.
        out_dir: the run folder.
        run_ranges: the ranges of the run's statistics pass (``output.scale=per_level/per_run``), by group.
        ground_truth: annotated boxes to draw on single maps (``output.draw_gt``).
    """
    shown = settings.shown(predictions)
    reduced = reduce_levels(features, geometry, settings)
    maps = {key: red.maps for key, red in reduced.items()}
    ranges = image_ranges(settings.scale, maps, lambda key: key.level, run_ranges)
    jobs = []
    for key, feat in features.items():
        target = out_dir / safe_name(image_id) / safe_name(key.layer) / f"{safe_name(key.level)}.{settings.fmt}"
        names = keypoint_channel_names(key, feat.shape[0], predictions)
        opts = dataclasses.replace(settings.render, value_range=ranges[key], channel_names=names)
        job = functools.partial(
            _draw_level, image_id, key, feat, reduced[key], geometry, image, shown, settings, opts, target, ground_truth
        )
        jobs.append(job)
    return jobs


def save_arrays(
    target: Path, base: Path, settings: DrawSettings, reduced: ReducedMap | None, features: np.ndarray | None
) -> dict[str, Any]:
    """Write the arrays ``output.save_arrays`` asks for next to the picture ``target``: the drawn map as
    ``<level>.npy`` ((H, W) for a single map, (K, H, W) for a grid or RGB map) and the (C, H, W) float32
    features as ``<level>.features.npy``; returns their manifest entry (file relative to ``base``, shape)."""
    out: dict[str, Any] = {}
    stem = target.name[: -len(target.suffix)] if target.suffix else target.name
    if settings.save_maps and reduced is not None:
        arr = reduced.maps[0] if reduced.kind == "single" else reduced.maps
        path = write_array(target.with_name(f"{stem}.npy"), np.asarray(arr, np.float32))
        out["map"] = {"file": str(path.relative_to(base)), "shape": list(arr.shape)}
    if settings.save_features and features is not None:
        path = write_array(target.with_name(f"{stem}.features.npy"), np.asarray(features, np.float32))
        out["features"] = {"file": str(path.relative_to(base)), "shape": list(features.shape)}
    return out


def _draw_level(
    image_id: str,
    key: LevelKey,
    feat: np.ndarray,
    reduced: ReducedMap,
    geometry: Geometry,
    image: np.ndarray,
    shown: Predictions | None,
    settings: DrawSettings,
    opts: Any,
    target: Path,
    ground_truth: Detections | None = None,
) -> tuple[MapRecord, np.ndarray | None]:
    """Draw and write one level (``output.pictures=composite|both``: the picture, captioned, with its colour bar;
    ``maps|both``: ``<level>.npy``); returns its record and the bare picture for contact sheets (None in maps
    mode)."""
    c, h, w = feat.shape
    stride_hw, cell_origin = cell_placement((h, w), geometry)
    base = target.parents[2]
    reducer = settings.reducer if settings.reducer != "none" else f"top{len(reduced.channels)}"
    picture = written = None
    if settings.write_pictures:
        bare = dataclasses.replace(opts, colorbar=False)
        drawn = render_map_scaled(reduced, (h, w), geometry, image, bare, shown, ground_truth)
        picture = drawn.picture
        scale, tile_scales = drawn.scale, drawn.tile_scales
        full = with_colorbar(drawn, opts).picture
        if settings.caption:
            full = caption_band(full, map_caption(key.layer, key.level, reducer, scale, tile_scales))
        written = write_image(target, full)
    else:
        scale, tile_scales = map_scales(reduced, opts.value_range)
    cropped = crop_valid(feat, geometry) if settings.save_features else None
    arrays = save_arrays(target, base, settings, reduced, cropped)
    file = written.relative_to(base) if written is not None else Path(arrays["map"]["file"])
    record = MapRecord(
        image=image_id,
        layer=key.layer,
        level=key.level,
        shape=(c, h, w),
        valid_hw=valid_cells((h, w), geometry),
        reducer=reducer,
        channels=reduced.channels,
        stats=finite_stats(reduced.maps),
        file=str(file),
        note=reduced.note,
        non_finite=int(feat.size - np.count_nonzero(np.isfinite(feat))),
        scale=scale,
        tile_scales=tile_scales,
        arrays=arrays,
        stride_hw=stride_hw,
        cell_origin=cell_origin,
    )
    return record, picture


def draw_levels(
    image_id: str,
    image: np.ndarray,
    features: dict[LevelKey, np.ndarray],
    geometry: Geometry,
    predictions: Predictions | None,
    settings: DrawSettings,
    out_dir: Path,
    pool: Executor | None = None,
    run_ranges: Mapping[str, tuple[float, float] | None] | None = None,
) -> list[tuple[MapRecord, np.ndarray | None]]:
    """Draw every level of one image (see :func:`level_jobs`), in ``pool``'s threads when given; returns each
    level's record and picture, in level order."""
    jobs = level_jobs(image_id, image, features, geometry, predictions, settings, out_dir, run_ranges)
    if pool is None:
        return [job() for job in jobs]
    return [future.result() for future in [pool.submit(job) for job in jobs]]
