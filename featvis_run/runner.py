"""Experiments: record the configured layers of an mmdet model on images and draw every map.

The entry point (``cli``) builds a typed :class:`~featvis_run.schema.Config` and calls :func:`run`; everything
below takes typed arguments.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.errors import ConfigError
from featvis_run.features import LevelKey
from featvis_run.geometry import crop_valid, valid_cells
from featvis_run.images import demo_image_path
from featvis_run.outputs import ensure_writable_dir, safe_name, write_image
from featvis_run.reduce import reduce_channels, standardize
from featvis_run.render import Detections, RenderOptions, check_arrangement, render_map
from featvis_run.results import MapRecord
from featvis_run.schema import Config, ReducerName

__all__ = ["DrawSettings", "Timer", "check_inputs", "draw_levels", "image_paths", "run"]


@dataclass(frozen=True)
class DrawSettings:
    """How to turn a (C, H, W) map into an image: reduction, normalization, rendering, boxes, format."""

    reducer: str
    topk: int
    use_norm: bool
    render: RenderOptions
    draw_boxes: bool
    pred_score_thr: float
    fmt: str

    @classmethod
    def from_config(cls, cfg: Config) -> DrawSettings:
        """Validate the drawing options (before any model is loaded) and collect them."""
        out, lay = cfg.output, cfg.layout
        if not 0.0 <= out.alpha <= 1.0:
            raise ConfigError(f"output.alpha={out.alpha} must be within [0, 1] (0: image only, 1: map only)")
        if not 0.0 <= out.pred_score_thr <= 1.0:
            raise ConfigError(f"output.pred_score_thr={out.pred_score_thr} must be within [0, 1]")
        if out.resize_shape is not None and (len(out.resize_shape) != 2 or min(out.resize_shape) <= 0):
            shape = list(out.resize_shape)
            raise ConfigError(f"output.resize_shape={shape} must be [height, width] (positive numbers) or null")
        reducer = ReducerName(cfg.reducer.name).value
        if reducer == "none":
            if cfg.topk == 0 or cfg.topk < -1:
                raise ConfigError(f"topk={cfg.topk} is invalid with reducer=none: use a positive count, or -1")
            if cfg.topk > 0:
                check_arrangement(cfg.topk, lay.arrangement)
        from featvis_run.render import colormap_id

        colormap_id(out.colormap)
        render = RenderOptions(
            overlaid=out.overlaid,
            alpha=float(out.alpha),
            resize_shape=tuple(out.resize_shape) if out.resize_shape else None,
            colormap=out.colormap,
            min_size=out.min_size,
            arrangement=tuple(lay.arrangement) if lay.arrangement else None,
            min_tile=lay.min_tile,
            max_tile=lay.max_tile,
            gap=lay.gap,
            label=lay.label,
        )
        fmt = out.format.value if hasattr(out.format, "value") else str(out.format)
        return cls(reducer, cfg.topk, cfg.use_norm, render, out.draw_boxes, float(out.pred_score_thr), fmt)


@dataclass
class Timer:
    """Accumulates wall-clock seconds per phase."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, started: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started


def image_paths(cfg: Config) -> list[Path]:
    """The input images of a single-image run (``image``, or the shipped demo scene)."""
    return [Path(cfg.image).expanduser() if cfg.image else demo_image_path()]


def check_inputs(cfg: Config) -> None:
    """Refuse inputs the experiment would ignore: ``image`` and ``images`` together, ``images`` in a single run."""
    if cfg.image and cfg.images.paths is not None:
        raise ConfigError(
            f"image={cfg.image!r} and images={cfg.images.paths!r} are both given; keep one "
            "(image= for one file, images= for a folder, glob or list)"
        )
    if cfg.images.paths is not None and cfg.experiment.name == "single":
        raise ConfigError(
            f"images={cfg.images.paths!r} is read by experiment=multi_image (and diff); add experiment=multi_image, "
            "or give one file as image=..."
        )


def draw_levels(
    image_id: str,
    image: np.ndarray,
    features: dict[LevelKey, np.ndarray],
    geometry: Any,
    detections: Detections | None,
    settings: DrawSettings,
    out_dir: Path,
) -> list[tuple[MapRecord, np.ndarray]]:
    """Crop, (standardize,) reduce and draw each (C, H, W) map of one image; write one file per level.

    Returns each level's record with the picture written (for contact sheets)."""
    records = []
    dets = detections.above(settings.pred_score_thr) if detections is not None and settings.draw_boxes else None
    for key, feat in features.items():
        c, h, w = feat.shape
        valid = valid_cells((h, w), geometry)
        cropped = crop_valid(feat, geometry)
        if settings.use_norm:
            cropped = standardize(cropped)
        reduced = reduce_channels(cropped, settings.reducer, settings.topk, where=f"{key.layer}/{key.level}")
        picture = render_map(reduced, (h, w), geometry, image, settings.render, dets)
        target = out_dir / safe_name(image_id) / safe_name(key.layer) / f"{safe_name(key.level)}.{settings.fmt}"
        written = write_image(target, picture)
        maps = reduced.maps
        record = MapRecord(
            image=image_id,
            layer=key.layer,
            level=key.level,
            shape=(c, h, w),
            valid_hw=valid,
            reducer=settings.reducer if settings.reducer != "none" else f"top{len(reduced.channels)}",
            channels=reduced.channels,
            stats={"min": float(maps.min()), "max": float(maps.max()), "mean": float(maps.mean())},
            file=str(written.relative_to(out_dir)),
            note=reduced.note,
        )
        records.append((record, picture))
    return records


def run(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> Any:
    """Run the configured experiment and mode; returns a RunResult (draw) or a list of LayerInfo (layers)."""
    from featvis_run.experiments import EXPERIMENTS

    name = cfg.experiment.name
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment={name!r} is unknown; choose one of {', '.join(EXPERIMENTS)}")
    ensure_writable_dir(out_dir)
    return EXPERIMENTS[name](cfg, out_dir, resolved)


def unique_ids(paths: Sequence[Path]) -> list[str]:
    """Output folder names for images: their stems, made unique (``a``, ``a-2``) when two share one."""
    seen: dict[str, int] = {}
    ids = []
    for p in paths:
        stem = safe_name(p.stem)
        seen[stem] = seen.get(stem, 0) + 1
        ids.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return ids
