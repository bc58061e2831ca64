"""The analysis's files: one image's partial sums and peaks (``.featvis/analysis/<image>.npz``, journaled with the
image so a resumed run merges them instead of recomputing), a run's merged sums (``channels.partial.npz``, what a
sweep merges over shards) and the ``channels.csv`` table. NumPy ``.npz`` without pickles: names as unicode arrays,
numbers as float64/int64 arrays, read back exactly."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featvis_run.analysis.channels import ChannelMoments, channel_rows
from featvis_run.maps.geometry import Geometry

__all__ = [
    "CSV_COLUMNS",
    "ImagePartial",
    "LevelPartial",
    "channels_csv",
    "load_npz",
    "npz_bytes",
    "read_image_partial",
    "read_run_partial",
    "run_partial_arrays",
    "image_partial_arrays",
]

#: the columns of channels.csv: those of the run-folder format first, then extras
CSV_COLUMNS = ("layer", "level", "channel", "mean", "std", "max", "sparsity", "dead", "min", "cells")
_FORMAT = 1
_MOMENT_FIELDS = (("count", "count"), ("mean", "mean"), ("m2", "m2"), ("min", "minimum"), ("max", "maximum"))
_MOMENT_FIELDS += (("nonpos", "nonpositive"),)


@dataclass(frozen=True)
class LevelPartial:
    """One level of one image: its recorded (uncropped) size, the sums of its valid cells (None when
    ``analysis.channels`` is off) and its peaks (values, rows, cols; None when ``analysis.top_images`` is 0)."""

    layer: str
    level: str
    feat_hw: tuple[int, int]
    moments: ChannelMoments | None
    peaks: tuple[np.ndarray, np.ndarray, np.ndarray] | None


@dataclass(frozen=True)
class ImagePartial:
    """What one image adds to a run's analysis, and where its maps lie on it (for the atlas's crops)."""

    geometry: Geometry
    levels: tuple[LevelPartial, ...]
    affine: tuple[tuple[float, ...], ...] | None = None


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """``arrays`` as the bytes of an uncompressed ``.npz``."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles). Raises ValueError for a file that is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path.name} is not a readable .npz file ({err})") from None


def _moment_arrays(prefix: str, m: ChannelMoments) -> dict[str, np.ndarray]:
    return {f"{prefix}_{name}": np.asarray(getattr(m, attr)) for name, attr in _MOMENT_FIELDS}


def _read_moments(data: Mapping[str, np.ndarray], prefix: str) -> ChannelMoments | None:
    if f"{prefix}_count" not in data:
        return None
    values = {attr: np.asarray(data[f"{prefix}_{name}"]) for name, attr in _MOMENT_FIELDS}
    count = values["count"].astype(np.int64)
    if count.ndim != 1 or any(v.shape != count.shape for v in values.values()):
        raise ValueError(f"the sums under {prefix!r} have inconsistent shapes")
    floats = {k: v.astype(np.float64) for k, v in values.items() if k not in ("count", "nonpositive")}
    return ChannelMoments(count=count, nonpositive=values["nonpositive"].astype(np.int64), **floats)


def _names(data: Mapping[str, np.ndarray]) -> list[tuple[str, str]]:
    layers, levels = data["layers"], data["levels"]
    if layers.dtype.kind != "U" or levels.dtype.kind != "U" or layers.shape != levels.shape or layers.ndim != 1:
        raise ValueError("the level names are not a pair of string lists of one length")
    return list(zip(layers.tolist(), levels.tolist(), strict=True))


def image_partial_arrays(partial: ImagePartial) -> dict[str, np.ndarray]:
    """The arrays of one image's ``.npz``."""
    g = partial.geometry
    out: dict[str, np.ndarray] = {
        "format": np.array(_FORMAT),
        "geometry": np.array([*g.ori_hw, *g.img_hw, *g.input_hw, *g.offset_hw], np.int64),
        "layers": np.array([lv.layer for lv in partial.levels], dtype=str),
        "levels": np.array([lv.level for lv in partial.levels], dtype=str),
        "feat_hw": np.array([lv.feat_hw for lv in partial.levels], np.int64).reshape(-1, 2),
    }
    if partial.affine is not None:
        out["affine"] = np.array(partial.affine, np.float64)
    for i, lv in enumerate(partial.levels):
        if lv.moments is not None:
            out.update(_moment_arrays(f"m{i}", lv.moments))
        if lv.peaks is not None:
            out.update({f"p{i}_value": lv.peaks[0], f"p{i}_row": lv.peaks[1], f"p{i}_col": lv.peaks[2]})
    return out


def read_image_partial(path: Path) -> ImagePartial:
    """One image's partial as :func:`image_partial_arrays` wrote it. Raises ValueError for anything else."""
    data = load_npz(path)
    try:
        if int(data["format"]) != _FORMAT:
            raise ValueError(f"{path.name} has format {int(data['format'])}, not {_FORMAT}")
        g = [int(v) for v in data["geometry"].tolist()]
        if len(g) != 8:
            raise ValueError("the geometry needs 8 numbers")
        geometry = Geometry((g[0], g[1]), (g[2], g[3]), (g[4], g[5]), (g[6], g[7]))
        names, feat_hw = _names(data), data["feat_hw"].astype(np.int64)
        if feat_hw.shape != (len(names), 2):
            raise ValueError("feat_hw does not match the levels")
        levels = []
        for i, (layer, level) in enumerate(names):
            peaks = None
            if f"p{i}_value" in data:
                peaks = (data[f"p{i}_value"].astype(np.float64), data[f"p{i}_row"], data[f"p{i}_col"])
            hw = (int(feat_hw[i, 0]), int(feat_hw[i, 1]))
            levels.append(LevelPartial(layer, level, hw, _read_moments(data, f"m{i}"), peaks))
        affine = tuple(tuple(float(v) for v in row) for row in data["affine"].tolist()) if "affine" in data else None
    except KeyError as err:
        raise ValueError(f"{path.name} lacks {err}") from None
    return ImagePartial(geometry, tuple(levels), affine)


def run_partial_arrays(
    levels: Mapping[tuple[str, str], ChannelMoments], images: Sequence[str]
) -> dict[str, np.ndarray]:
    """The arrays of ``channels.partial.npz``: a run's merged sums per level and the ids of the images counted."""
    out: dict[str, np.ndarray] = {
        "format": np.array(_FORMAT),
        "layers": np.array([k[0] for k in levels], dtype=str),
        "levels": np.array([k[1] for k in levels], dtype=str),
        "images": np.array(list(images), dtype=str),
    }
    for i, m in enumerate(levels.values()):
        out.update(_moment_arrays(f"m{i}", m))
    return out


def read_run_partial(path: Path) -> tuple[dict[tuple[str, str], ChannelMoments], list[str]]:
    """A run's merged sums per (layer, level) and its image ids, as :func:`run_partial_arrays` wrote them."""
    data = load_npz(path)
    try:
        if int(data["format"]) != _FORMAT:
            raise ValueError(f"{path.name} has format {int(data['format'])}, not {_FORMAT}")
        levels = {}
        for i, key in enumerate(_names(data)):
            moments = _read_moments(data, f"m{i}")
            if moments is None:
                raise ValueError(f"{path.name} has no sums for {key[0]}/{key[1]}")
            levels[key] = moments
        return levels, [str(v) for v in data["images"].tolist()]
    except KeyError as err:
        raise ValueError(f"{path.name} lacks {err}") from None


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def channels_csv(levels: Mapping[tuple[str, str], ChannelMoments]) -> str:
    """``channels.csv``: one row per channel of every level (:data:`CSV_COLUMNS`; numbers at full precision,
    empty for a channel without a finite cell; ``dead`` is ``true`` or ``false``)."""
    lines = [",".join(CSV_COLUMNS)]
    for (layer, level), moments in levels.items():
        for r in channel_rows(moments):
            cells = [_csv_text(layer), _csv_text(level), str(r.channel), _num(r.mean), _num(r.std), _num(r.maximum)]
            cells += [_num(r.sparsity), "true" if r.dead else "false", _num(r.minimum), str(r.cells)]
            lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def _csv_text(text: str) -> str:
    """A CSV field: quoted (quotes doubled) when it holds a comma, quote or line break."""
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(ch in text for ch in ',"\n\r') else text
