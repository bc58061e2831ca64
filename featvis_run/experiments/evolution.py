"""Drawing one level of one image over a sequence of checkpoints (or training steps), on one colour scale.

Shared by ``experiment=checkpoints`` and the training hook's end-of-training summary. For each level it writes

- frames ``<image>/<layer>/<level>/<label>.<fmt>``, every one with the level's shared colour range, captioned
  with its checkpoint (``output.pictures=composite|both``);
- ``<image>/<layer>/<level>/<label>.npy``: each frame's reduced map at feature resolution (``maps|both``);
- ``<image>/<layer>/<level>.gif``: one frame per checkpoint, each labelled with its checkpoint (composite|both);
- ``<image>/<layer>/<level>_strip.png``: the frames side by side, labelled (composite|both);
- ``<image>/<layer>/<level>_change.png``: mean |A_t - A_last| and CKA to the last frame, as a line plot (always).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from featvis_run.drawing.animation import encode_gif, label_frame, line_plot
from featvis_run.drawing.layout import caption_band, contact_sheet
from featvis_run.drawing.render import render_map
from featvis_run.experiments.draw import finite_stats
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.evolution import change_to_reference, reduce_fixed, shared_range
from featvis_run.maps.geometry import Geometry, cell_placement, crop_valid, valid_cells
from featvis_run.maps.reduce import reduce_channels, standardize
from featvis_run.predictions import Predictions
from featvis_run.recording.levels import LevelKey
from featvis_run.store.manifest import MapRecord
from featvis_run.store.outputs import safe_name, write_array, write_bytes, write_image

__all__ = ["Frame", "FrameRecord", "write_sequence"]

STRIP_HEIGHT = 240  # px: strip tiles are shrunk to at most this height


@dataclass(frozen=True)
class Frame:
    """One checkpoint's (or training step's) recorded map of one level of one image."""

    label: str  # the checkpoint's stem (``epoch_10``) or the training step (``iter_20``)
    feat: np.ndarray  # the recorded (C, H, W) map, uncropped
    geometry: Geometry
    predictions: Predictions | None = None


@dataclass(frozen=True)
class FrameRecord(MapRecord):
    """A written frame: a :class:`MapRecord` with its checkpoint and the colour range it was drawn with."""

    checkpoint: str = ""
    scale: tuple[float, float] | None = None  # the level's shared range: colours from scale[0] to scale[1]


def _shrink_to_height(picture: np.ndarray, height: int) -> np.ndarray:
    h, w = picture.shape[:2]
    if h <= height:
        return picture
    return cv2.resize(picture, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)


def write_sequence(
    out_dir: Path,
    image_id: str,
    image: np.ndarray,
    key: LevelKey,
    frames: Sequence[Frame],
    settings: DrawSettings,
    duration_ms: int = 700,
) -> tuple[list[FrameRecord], dict[str, Any], list[str]]:
    """Draw ``frames`` (in order; the last is the reference) of one level of one image into ``out_dir``.

    Channels of ``select_max`` and top-k are chosen once on the last frame and kept for every frame; all frames
    share one colour range (the finite min and max over every frame's reduced map).

    Returns:
        The frames' records, the level's manifest entry (files, ``scale``, channels, change to the last frame) and
        notes (e.g. the plot could not be drawn).
    """
    where = f"{key.layer}/{key.level}"
    cropped = [crop_valid(f.feat, f.geometry) for f in frames]
    if settings.use_norm:
        cropped = [standardize(c) for c in cropped]
    ref = reduce_channels(cropped[-1], settings.reducer, settings.topk, where=where)
    fixed = ref.channels if settings.reducer in ("select_max", "none") else None
    reduced = [reduce_fixed(c, settings.reducer, settings.topk, fixed, where) for c in cropped]
    scale = shared_range([r.maps for r in reduced])
    opts = replace(settings.render, value_range=scale)
    folder = out_dir / safe_name(image_id) / safe_name(key.layer)
    level = safe_name(key.level)
    records, pictures = [], []
    for frame, red in zip(frames, reduced, strict=True):
        feat_hw = tuple(frame.feat.shape[-2:])
        stem = folder / level / safe_name(frame.label)
        file, arrays = None, {}
        if settings.write_pictures:
            picture = render_map(red, feat_hw, frame.geometry, image, opts, settings.shown(frame.predictions))
            pictures.append(picture)
            colours = f"colours {scale[0]:.3g} .. {scale[1]:.3g}" if scale is not None else "no finite values"
            shown = caption_band(picture, f"{frame.label}  {where}  {colours}") if settings.caption else picture
            file = str(write_image(stem.with_name(f"{stem.name}.{settings.fmt}"), shown).relative_to(out_dir))
        if settings.save_maps:
            arr = red.maps[0] if red.kind == "single" else red.maps
            path = write_array(stem.with_name(f"{stem.name}.npy"), np.asarray(arr, np.float32))
            arrays["map"] = {"file": str(path.relative_to(out_dir)), "shape": list(arr.shape)}
        stride_hw, cell_origin = cell_placement(feat_hw, frame.geometry)
        records.append(
            FrameRecord(
                image=image_id,
                layer=key.layer,
                level=key.level,
                shape=tuple(int(v) for v in frame.feat.shape),
                valid_hw=valid_cells(feat_hw, frame.geometry),
                reducer=settings.reducer if settings.reducer != "none" else f"top{len(red.channels)}",
                channels=red.channels,
                stats=finite_stats(red.maps),
                file=file or arrays["map"]["file"],
                note=red.note,
                non_finite=int(frame.feat.size - np.count_nonzero(np.isfinite(frame.feat))),
                arrays=arrays,
                checkpoint=frame.label,
                scale=scale,
                stride_hw=stride_hw,
                cell_origin=cell_origin,
            )
        )
    labels = [f.label for f in frames]
    gif = strip_file = None
    if pictures:
        frames_gif = [label_frame(p, f"{lab}  {where}") for p, lab in zip(pictures, labels, strict=True)]
        gif = write_bytes(folder / f"{level}.gif", encode_gif(frames_gif, duration_ms))
        strip = contact_sheet([_shrink_to_height(p, STRIP_HEIGHT) for p in pictures], labels, rows=1)
        strip_file = write_image(folder / f"{level}_strip.png", strip)
    change = change_to_reference(cropped, cropped[-1])
    notes: list[str] = []
    plot_file = None
    try:
        plot = line_plot(
            labels,
            {
                "mean |A_t - A_last|": [c["mean_abs_diff"] for c in change],
                "CKA to last": [c["cka"] for c in change],
            },
            f"{image_id} {where}: change to {labels[-1]}",
        )
        plot_file = str(write_image(folder / f"{level}_change.png", plot).relative_to(out_dir))
    except ImportError as err:
        notes.append(f"no change plots: matplotlib cannot be imported ({err}); the numbers are in the manifest")
    entry = {
        "image": image_id,
        "layer": key.layer,
        "level": key.level,
        "scale": list(scale) if scale is not None else None,
        "channels": list(fixed) if fixed is not None else None,
        "frames": [r.file for r in records],
        "gif": str(gif.relative_to(out_dir)) if gif is not None else None,
        "strip": str(strip_file.relative_to(out_dir)) if strip_file is not None else None,
        "change_plot": plot_file,
        "change": [{"checkpoint": lab, **c} for lab, c in zip(labels, change, strict=True)],
    }
    return records, entry, notes
