"""Drawing every recorded level of one image: crop to the valid cells, (standardize,) reduce, render, write."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from featvis_run.drawing.render import render_map
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.geometry import Geometry, crop_valid, valid_cells
from featvis_run.maps.reduce import reduce_channels, standardize
from featvis_run.predictions import Predictions
from featvis_run.recording.levels import LevelKey
from featvis_run.store.manifest import MapRecord
from featvis_run.store.outputs import safe_name, write_image

__all__ = ["draw_levels", "finite_stats", "non_finite_notes", "prediction_counts"]


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


def draw_levels(
    image_id: str,
    image: np.ndarray,
    features: dict[LevelKey, np.ndarray],
    geometry: Geometry,
    predictions: Predictions | None,
    settings: DrawSettings,
    out_dir: Path,
) -> list[tuple[MapRecord, np.ndarray]]:
    """Draw each (C, H, W) map of one image and write one file per level under ``out_dir/<image>/<layer>/``.

    Args:
        image_id: the image's output folder name.
        image: the original BGR image.
        features: the recorded maps by level (uncropped).
        geometry: where the maps lie on the image.
        predictions: the model's predictions (drawn on single overlays, see :meth:`DrawSettings.shown`).
        settings: how to reduce and draw.
        out_dir: the run folder.

    Returns:
        Each level's record with the picture written (for contact sheets).
    """
    shown = settings.shown(predictions)
    # every level is reduced before any is drawn: an impossible request (topk=-1 on 256 channels) fails up front
    reduced_levels = []
    for key, feat in features.items():
        cropped = crop_valid(feat, geometry)
        if settings.use_norm:
            cropped = standardize(cropped)
        where = f"{key.layer}/{key.level}"
        reduced_levels.append(reduce_channels(cropped, settings.reducer, settings.topk, where=where))
    records = []
    for (key, feat), reduced in zip(features.items(), reduced_levels, strict=True):
        c, h, w = feat.shape
        picture = render_map(reduced, (h, w), geometry, image, settings.render, shown)
        target = out_dir / safe_name(image_id) / safe_name(key.layer) / f"{safe_name(key.level)}.{settings.fmt}"
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
            file=str(written.relative_to(out_dir)),
            note=reduced.note,
            non_finite=int(feat.size - np.count_nonzero(np.isfinite(feat))),
        )
        records.append((record, picture))
    return records
