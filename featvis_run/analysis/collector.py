"""A run's channel statistics and atlas, fed image by image (``analysis.channels``, ``analysis.top_images``).

For each image the run measures its partial sums and peaks (:meth:`RunAnalysis.measure`), writes them to
``.featvis/analysis/<image>.npz`` and lists that file in the image's journal entry, so the run-folder logic owns
it: a resumed run merges the partials of the images it skips (:meth:`RunAnalysis.restore`) in input order, as the
uninterrupted run would have. At the end :meth:`RunAnalysis.finish` writes ``channels.csv``,
``channels.partial.npz`` (the sums a sweep merges over shards) and ``atlas/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.analysis.atlas import TopCells, image_peaks
from featvis_run.analysis.channels import ChannelMoments, dead_channels, merge_moments, moments_of
from featvis_run.analysis.partials import (
    ImagePartial,
    LevelPartial,
    channels_csv,
    image_partial_arrays,
    npz_bytes,
    read_image_partial,
    run_partial_arrays,
)
from featvis_run.errors import ConfigError
from featvis_run.maps.geometry import Geometry, crop_valid
from featvis_run.schema import AnalysisConfig
from featvis_run.store.outputs import safe_name, write_bytes

__all__ = [
    "CHANNELS_CSV",
    "MAX_TOP_IMAGES",
    "PARTIAL_DIR",
    "RUN_PARTIAL",
    "ImageWhere",
    "RunAnalysis",
    "check_analysis",
]

CHANNELS_CSV = "channels.csv"
RUN_PARTIAL = "channels.partial.npz"
PARTIAL_DIR = ".featvis/analysis"
#: analysis.top_images above this is refused (the atlas writes channels x levels x N crops)
MAX_TOP_IMAGES = 50

LevelName = tuple[str, str]
#: where an image's maps lie on it: its path, geometry, affine (or None) and each level's recorded (H, W)
ImageWhere = tuple[str, Geometry, Any, dict[LevelName, tuple[int, int]]]


def check_analysis(config: AnalysisConfig, experiment: str) -> None:
    """Refuse ``analysis.*`` values the run cannot honour, before anything is written or loaded."""
    if experiment not in ("single", "multi_image") and (config.channels or config.top_images):
        raise ConfigError(
            f"analysis.channels / analysis.top_images are computed by experiment=single and multi_image, not "
            f"experiment={experiment}; drop them, or run experiment=multi_image on the same images"
        )
    if config.top_images < 0 or config.top_images > MAX_TOP_IMAGES:
        raise ConfigError(
            f"analysis.top_images={config.top_images} must be within 0..{MAX_TOP_IMAGES} (the atlas keeps that "
            "many images per channel; 0: no atlas)"
        )


class RunAnalysis:
    """The analysis of one run over ``image_ids`` (the run's inputs in order: an image's position is its rank among
    equal peaks)."""

    def __init__(self, config: AnalysisConfig, out_dir: Path, image_ids: Sequence[str]):
        check_analysis(config, "multi_image")
        self.channels, self.top = bool(config.channels), int(config.top_images)
        self.out_dir = out_dir
        self.seq = {image_id: i for i, image_id in enumerate(image_ids)}
        self.ids = list(image_ids)
        self.totals: dict[LevelName, ChannelMoments] = {}
        self.tops: dict[LevelName, TopCells] = {}
        self.where: dict[int, ImageWhere] = {}
        self.counted: list[str] = []
        self.notes: list[str] = []

    @property
    def enabled(self) -> bool:
        """Whether the run measures anything."""
        return self.channels or self.top > 0

    def measure(self, features: Mapping[Any, np.ndarray], geometry: Geometry) -> ImagePartial:
        """One image's partial: per level (keys with ``layer`` and ``level``), the sums and peaks of its valid
        cells."""
        levels = []
        for key, feat in features.items():
            cells = crop_valid(np.asarray(feat), geometry)
            moments = moments_of(cells) if self.channels else None
            peaks = image_peaks(cells) if self.top else None
            levels.append(LevelPartial(key.layer, key.level, (feat.shape[-2], feat.shape[-1]), moments, peaks))
        return ImagePartial(geometry, tuple(levels), getattr(geometry, "affine", None))

    def partial_file(self, image_id: str) -> str:
        """The partial's path relative to the run folder."""
        return f"{PARTIAL_DIR}/{safe_name(image_id)}.npz"

    def keep(self, image_id: str, path: str, partial: ImagePartial) -> list[str]:
        """Write one image's partial and count it; returns the file to list in its journal entry."""
        rel = self.partial_file(image_id)
        write_bytes(self.out_dir / rel, npz_bytes(image_partial_arrays(partial)))
        self._add(image_id, path, partial)
        return [rel]

    def has_partial(self, image_id: str, entry: Mapping[str, Any]) -> bool:
        """Whether an image's journal entry lists its partial and the file is there (always, when off)."""
        rel = self.partial_file(image_id)
        return not self.enabled or (rel in entry.get("files", ()) and (self.out_dir / rel).is_file())

    def restore(self, image_id: str, entry: Mapping[str, Any]) -> bool:
        """Count an image a earlier run in this folder finished, from the partial its journal entry lists; False
        when it lists none or it cannot be read (the image is then drawn again)."""
        if not self.enabled:
            return True
        rel = self.partial_file(image_id)
        if rel not in entry.get("files", ()):
            return False
        try:
            partial = read_image_partial(self.out_dir / rel)
        except ValueError:
            return False
        image = entry.get("image")
        path = image.get("path") if isinstance(image, Mapping) else None
        self._add(image_id, str(path or ""), partial)
        return True

    def _add(self, image_id: str, path: str, partial: ImagePartial) -> None:
        seq = self.seq.get(image_id, len(self.seq))
        self.counted.append(image_id)
        if self.top:
            hws = {(lv.layer, lv.level): lv.feat_hw for lv in partial.levels}
            self.where[seq] = (path, partial.geometry, partial.affine, hws)
        for lv in partial.levels:
            key = (lv.layer, lv.level)
            try:
                if lv.moments is not None:
                    known = self.totals.get(key)
                    self.totals[key] = lv.moments if known is None else merge_moments(known, lv.moments)
                if lv.peaks is not None:
                    tops = self.tops.setdefault(key, TopCells(len(lv.peaks[0]), self.top))
                    tops.add(seq, *lv.peaks)
            except ValueError as err:  # another channel count for this level than earlier images had
                note = f"analysis: {lv.layer}/{lv.level} of {image_id} not counted: {err}"
                self.notes.append(note)

    def dead(self) -> dict[LevelName, list[int]]:
        """The dead channels of each level (see :func:`~featvis_run.analysis.channels.dead_channels`)."""
        return {key: np.nonzero(dead_channels(m))[0].tolist() for key, m in self.totals.items()}

    def finish(self, max_pixels: int | None = None) -> dict[str, Any]:
        """Write ``channels.csv``, ``channels.partial.npz`` and the atlas; returns the manifest's ``analysis``."""
        entry: dict[str, Any] = {"channels": self.channels, "top_images": self.top, "images": len(self.counted)}
        files: list[str] = []
        if self.channels:
            write_bytes(self.out_dir / CHANNELS_CSV, channels_csv(self.totals).encode("utf-8"))
            write_bytes(self.out_dir / RUN_PARTIAL, npz_bytes(run_partial_arrays(self.totals, self.counted)))
            files += [CHANNELS_CSV, RUN_PARTIAL]
            entry.update(channels_csv=CHANNELS_CSV, partial=RUN_PARTIAL, levels=level_entries(self.totals))
        if self.top:
            from featvis_run.analysis.atlas_page import write_atlas

            written = write_atlas(self.out_dir, self.tops, self.where, self.ids, self.dead(), max_pixels)
            self.notes += written.notes
            files += written.files
            entry["atlas"] = written.index
        entry["files"] = files
        return entry


def level_entries(totals: Mapping[LevelName, ChannelMoments]) -> list[dict[str, Any]]:
    """The manifest's per-level summary: channels, cells per channel, and the dead channels."""
    return [
        {
            "layer": layer,
            "level": level,
            "channels": m.channels,
            "cells": int(m.count.max()) if m.channels else 0,
            "dead": np.nonzero(dead_channels(m))[0].tolist(),
        }
        for (layer, level), m in totals.items()
    ]
