"""What the report page shows, built from a run's manifest and the arrays it saved: plain JSON-ready values.

Maps are inlined as base64 of little-endian float32 (``values``) and recorded features as float16 (``features``);
every path read from the manifest is confined to the run folder (:func:`featvis_run.store.owned_paths.confine`).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.store.owned_paths import confine

__all__ = ["MapSource", "encode_f16", "encode_f32", "load_array", "map_entries", "model_labels", "run_data"]

#: the roles of maps in a page: a run's map, a diff's sides and difference, a checkpoint's frame
MapSource = tuple[str, Mapping[str, Any]]


def encode_f32(array: np.ndarray) -> str:
    """``array`` as base64 of little-endian float32 (what the page's ``f32`` decodes)."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def encode_f16(array: np.ndarray) -> str:
    """``array`` as base64 of little-endian float16 (values beyond float16's range become +-inf)."""
    with np.errstate(over="ignore"):
        half = np.ascontiguousarray(array, dtype="<f2")
    return base64.b64encode(half.tobytes()).decode("ascii")


def load_array(root: Path, entry: Any) -> np.ndarray | None:
    """The float array an ``arrays`` entry names (``{"file", "shape"}``), if it lies inside ``root``, loads without
    pickles and has the recorded shape; else None."""
    if not isinstance(entry, Mapping):
        return None
    confined = confine(root, [entry.get("file")])
    if confined.ignored or not confined.paths or not confined.paths[0].is_file():
        return None
    with contextlib.suppress(OSError, ValueError):
        arr = np.load(confined.paths[0], allow_pickle=False)
        if arr.dtype.kind == "f" and list(arr.shape) == list(entry.get("shape", arr.shape)):
            return arr
    return None


def _finite_range(arr: np.ndarray) -> list[float] | None:
    finite = arr[np.isfinite(arr)]
    return [float(finite.min()), float(finite.max())] if finite.size else None


def _channel_order(feat: np.ndarray) -> dict[str, list[float]]:
    """Per channel of a (C, h, w) map: the finite max and mean (NaN-free; -inf for a channel of no finite value)."""
    flat = feat.reshape(feat.shape[0], -1).astype(np.float64)
    finite = np.isfinite(flat)
    count = finite.sum(axis=1)
    peak = np.where(finite, flat, -np.inf).max(axis=1, initial=-np.inf)
    mean = np.where(finite, flat, 0.0).sum(axis=1) / np.maximum(count, 1)
    peak = np.where(count > 0, peak, -1e30)
    return {"max": [round(float(v), 6) for v in peak], "mean": [round(float(v), 6) for v in mean]}


def map_entry(
    root: Path,
    role: str,
    record: Mapping[str, Any],
    placement: Mapping[str, Any] | None = None,
    array_key: str = "map",
    features_key: str = "features",
    prefix: str = "",
) -> dict[str, Any]:
    """One map of the page: where it lies, its colour range, its values (when ``<level>.npy`` was saved) and its
    recorded features (when ``<level>.features.npy`` was); ``prefix`` is prepended to relative links (sweeps)."""
    place = placement or record
    entry: dict[str, Any] = {
        "role": role,
        "image": record.get("image"),
        "layer": record.get("layer"),
        "level": record.get("level"),
        "reducer": record.get("reducer"),
        "shape": record.get("shape"),
        "stride": place.get("stride_hw"),
        "origin": place.get("cell_origin"),
        "geometry": placement.get("geometry") if placement else None,
        "scale": record.get("scale"),
        "channels": list(record.get("channels") or [])[:64],
        "checkpoint": record.get("checkpoint"),
        "picture": prefix + str(record["file"]) if record.get("file") else None,
        "note": record.get("note"),
    }
    arrays = record.get("arrays") or {}
    values = load_array(root, arrays.get(array_key))
    if values is not None:
        grid = values if values.ndim == 3 else values[None]
        entry |= {"k": grid.shape[0], "h": grid.shape[1], "w": grid.shape[2], "values": encode_f32(grid)}
        entry["range"] = _finite_range(grid)
    feat = load_array(root, arrays.get(features_key))
    if feat is not None and feat.ndim == 3:
        entry["features"] = {
            "c": feat.shape[0],
            "h": feat.shape[1],
            "w": feat.shape[2],
            "values": encode_f16(feat),
            **_channel_order(feat),
        }
    return entry


def map_entries(root: Path, manifest: Mapping[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Every map of a run's page: its outputs (a diff's sides and difference, a checkpoint's frames)."""
    comparisons = {(c.get("image"), c.get("level")): c for c in manifest.get("comparisons") or []}
    out = []
    for record in manifest.get("outputs") or []:
        if not isinstance(record, Mapping) or not record.get("image"):
            continue
        if record.get("layer") == "diff" and comparisons:
            c = comparisons.get((record.get("image"), record.get("level")), {})
            out.append(map_entry(root, "diff", record, c.get("placement_diff"), prefix=prefix))
            for side in ("a", "b"):
                side_record = dict(record, layer=c.get(f"layer_{side}", side), file=None, scale=c.get("panel_scale"))
                out.append(
                    map_entry(root, side, side_record, c.get(f"placement_{side}"), f"map_{side}", f"features_{side}")
                )
        else:
            out.append(map_entry(root, "frame" if record.get("checkpoint") else "map", record, prefix=prefix))
    return out


def model_labels(models: Sequence[Mapping[str, Any]]) -> list[str]:
    """A label per model that tells them apart: the name, with the checkpoint's stem when names repeat (and the
    weights' digest when the stems repeat too)."""
    names = [str(m.get("name")) for m in models]
    labels = []
    for m, name in zip(models, names, strict=True):
        label = name
        if names.count(name) > 1:
            ckpt = m.get("checkpoint")
            stem = Path(str(ckpt)).stem if ckpt else "random init"
            label = f"{name} ({stem})"
        labels.append(label)
    repeated = [labels.count(label) > 1 for label in labels]
    for i, m in enumerate(models):
        if repeated[i]:
            labels[i] += f" [{str(m.get('sha256') or 'seed ' + str(m.get('seed')))[:8]}]"
    return labels


def _image_entry(image: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    photo = image.get("image_file")
    return {
        "id": image.get("id") or Path(str(image.get("path"))).stem,
        "name": Path(str(image.get("path"))).name,
        "photo": prefix + str(photo) if photo else None,
        "ori_hw": image.get("size_hw"),
        "geometry": image.get("geometry"),
        "predictions": image.get("predictions"),
        "explained": image.get("explained"),
        "metrics": image.get("metrics"),
    }


def run_data(root: Path, manifest: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The page's data of one run: its images, maps, models, notes and the experiment's extras."""
    config = manifest.get("config") or {}
    output = config.get("output") or {}
    data: dict[str, Any] = {
        "experiment": manifest.get("experiment"),
        "status": manifest.get("status"),
        "models": [
            {"label": label, "name": m.get("name"), "weights": m.get("weights"), "checkpoint": m.get("checkpoint")}
            for label, m in zip(model_labels(manifest.get("models") or []), manifest.get("models") or [], strict=True)
        ],
        "images": [_image_entry(i, prefix) for i in manifest.get("images") or [] if isinstance(i, Mapping)],
        "maps": map_entries(root, manifest, prefix),
        "scale": manifest.get("scale") or {},
        "colormap": output.get("colormap", "jet"),
        "alpha": output.get("alpha", 0.5),
        "notes": list(manifest.get("notes") or []),
        "failures": [f"{f.get('item')}: {f.get('reason')}" for f in manifest.get("failures") or []],
        "links": [],
    }
    for sheet in manifest.get("contact_sheets") or []:
        data["links"].append({"label": f"contact sheet {sheet['layer']} / {sheet['level']}", "href": sheet["file"]})
    data["links"] += analysis_links(manifest.get("analysis"), prefix)
    data["analysis"] = analysis_lines(manifest.get("analysis"), manifest.get("metrics"))
    if manifest.get("comparisons") is not None:
        data["diff"] = {"mode": manifest.get("diff_mode"), "comparisons": manifest.get("comparisons")}
    if manifest.get("experiment") == "checkpoints":
        data["checkpoints"] = {
            "entries": manifest.get("checkpoints") or [],
            "levels": [
                {k: lv.get(k) for k in ("image", "layer", "level", "scale", "gif", "strip", "change_plot", "change")}
                for lv in manifest.get("levels") or []
            ],
        }
    return data


def analysis_links(entry: Any, prefix: str = "") -> list[dict[str, str]]:
    """Links to the run's channel statistics and atlas (``analysis.channels`` / ``analysis.top_images``)."""
    if not isinstance(entry, Mapping):
        return []
    labels = (("channels_csv", "channel statistics (channels.csv)"), ("atlas", "channel atlas"))
    return [{"label": label, "href": prefix + str(entry[key])} for key, label in labels if entry.get(key)]


def analysis_lines(entry: Any, metrics: Any) -> list[dict[str, Any]]:
    """The page's analysis lines: dead channels per level (loud when any) and the explanation metrics' means."""
    lines: list[dict[str, Any]] = []
    if isinstance(entry, Mapping):
        for lv in entry.get("levels") or []:
            dead = list(lv.get("dead") or [])
            shown = ", ".join(map(str, dead[:32])) + (", ..." if len(dead) > 32 else "")
            text = f"{lv.get('layer')} / {lv.get('level')}: {len(dead)} of {lv.get('channels')} channels dead"
            lines.append({"loud": bool(dead), "text": text + (f" ({shown})" if dead else "")})
    if isinstance(metrics, Mapping):
        keys = ("pointing_game", "energy_in_boxes", "deletion_auc", "insertion_auc")

        def values(block: Mapping[str, Any]) -> str:
            return ", ".join(f"{k} {block[k]:.3f}" for k in keys if isinstance(block.get(k), int | float))

        text = f"metrics ({metrics.get('reducer')}, {metrics.get('images', 0)} image(s)): {values(metrics)}"
        if isinstance(metrics.get("random"), Mapping):
            text += f"; random baseline: {values(metrics['random'])}"
        lines.append({"loud": False, "text": text})
    return lines
