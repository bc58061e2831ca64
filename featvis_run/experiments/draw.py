"""Drawing every recorded level of one image: crop to the valid cells, (standardize,) reduce, render, write."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from featvis_run.drawing.render import render_map
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.geometry import Geometry, crop_valid, valid_cells
from featvis_run.maps.reduce import ReducedMap, reduce_channels, standardize
from featvis_run.predictions import Predictions
from featvis_run.recording.levels import LevelKey
from featvis_run.store.manifest import MapRecord
from featvis_run.store.outputs import safe_name, write_image

__all__ = ["draw_levels", "finite_stats", "level_jobs", "non_finite_notes", "prediction_counts"]


def prediction_counts(predictions: Predictions | None, settings: DrawSettings) -> dict[str, int]:
    """The manifest's count of an image's predictions (boxes drawn, or classes predicted); none if it has none."""
    return predictions.summary(settings.pred_score_thr) if predictions is not None else {}


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


def level_jobs(
    image_id: str,
    image: np.ndarray,
    features: dict[LevelKey, np.ndarray],
    geometry: Geometry,
    predictions: Predictions | None,
    settings: DrawSettings,
    out_dir: Path,
) -> list[Callable[[], tuple[MapRecord, np.ndarray]]]:
    """The drawing of each (C, H, W) map of one image as a job that renders it, writes it under
    ``out_dir/<image>/<layer>/<level>.<fmt>`` and returns its record with the picture (jobs can run in threads).

    Every level is reduced here, before any is drawn: an impossible request (topk=-1 on 256 channels) fails up front.

    Args:
        image_id: the image's output folder name.
        image: the original BGR image.
        features: the recorded maps by level (uncropped).
        geometry: where the maps lie on the image.
        predictions: the model's predictions (drawn on single overlays, see :meth:`DrawSettings.shown`).
        settings: how to reduce and draw.
        out_dir: the run folder.
    """
    shown = settings.shown(predictions)
    jobs = []
    for key, feat in features.items():
        cropped = crop_valid(feat, geometry)
        if settings.use_norm:
            cropped = standardize(cropped)
        reduced = reduce_channels(cropped, settings.reducer, settings.topk, where=f"{key.layer}/{key.level}")
        target = out_dir / safe_name(image_id) / safe_name(key.layer) / f"{safe_name(key.level)}.{settings.fmt}"
        jobs.append(
            functools.partial(_draw_level, image_id, key, feat, reduced, geometry, image, shown, settings, target)
        )
    return jobs


def _draw_level(
    image_id: str,
    key: LevelKey,
    feat: np.ndarray,
    reduced: ReducedMap,
    geometry: Geometry,
    image: np.ndarray,
    shown: Predictions | None,
    settings: DrawSettings,
    target: Path,
) -> tuple[MapRecord, np.ndarray]:
    c, h, w = feat.shape
    picture = render_map(reduced, (h, w), geometry, image, settings.render, shown)
    written = write_image(target, picture)
    maps = reduced.maps
    record = MapRecord(
        image=image_id,
        layer=key.layer,
        level=key.level,
        shape=(c, h, w),
        valid_hw=valid_cells((h, w), geometry),
        reducer=settings.reducer if settings.reducer != "none" else f"top{len(reduced.channels)}",
        channels=reduced.channels,
        stats=finite_stats(maps),
        file=str(written.relative_to(target.parents[2])),
        note=reduced.note,
        non_finite=int(feat.size - np.count_nonzero(np.isfinite(feat))),
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
) -> list[tuple[MapRecord, np.ndarray]]:
    """Draw every level of one image (see :func:`level_jobs`), in ``pool``'s threads when given; returns each
    level's record and picture, in level order."""
    jobs = level_jobs(image_id, image, features, geometry, predictions, settings, out_dir)
    if pool is None:
        return [job() for job in jobs]
    return [future.result() for future in [pool.submit(job) for job in jobs]]
