"""``experiment=checkpoints``: one model config, many checkpoints (a list, glob or folder), the same images.

Checkpoints run in natural order (``epoch_9`` before ``epoch_10``); each level of each image gets frames, an
animated GIF, a strip and a change plot on one colour range (see :mod:`featvis_run.experiments.evolution`). A
checkpoint that does not load (missing, unreadable, refused, partial) is listed with its reason and the others run;
the run then ends with exit code 1.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from featvis_run.errors import ConfigError, FeatvisError, ModelError, error_line
from featvis_run.experiments.common import activation_cache, cache_summary
from featvis_run.experiments.draw import image_record, non_finite_notes, prediction_counts
from featvis_run.experiments.evolution import Frame, FrameRecord, write_sequence
from featvis_run.experiments.inputs import (
    ImageBatches,
    check_inputs,
    image_paths,
    named_inputs,
    selected_inputs,
    unique_ids,
)
from featvis_run.experiments.settings import DrawSettings
from featvis_run.experiments.stored import image_file, stored_image_hw, write_input_image
from featvis_run.maps.evolution import natural_key
from featvis_run.models.base import ImageFeatures
from featvis_run.models.registry import plan_model
from featvis_run.models.source import FeatureSource
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import Config
from featvis_run.store.images import InputImage
from featvis_run.store.manifest import Failure, ImageRecord, RunResult
from featvis_run.store.run_folder import RunFolder
from featvis_run.timing import Timer

__all__ = ["collect_checkpoints", "run_checkpoints"]

_EXAMPLE = "checkpoints='work_dirs/x/epoch_*.pth' (a glob), a folder, or a list '[a.pth,b.pth]'"


def collect_checkpoints(spec: str | Sequence[str] | None) -> list[Path]:
    """The checkpoint files ``spec`` names, de-duplicated and in natural order of their paths.

    ``spec`` is a file, a glob, a folder (its ``*.pth`` files) or a list of these. A listed file that does not
    exist is kept (it is reported as failed); a glob or folder that matches nothing is a ConfigError.
    """
    if spec is None or spec == "" or (not isinstance(spec, str) and not list(spec)):
        raise ConfigError(f"experiment=checkpoints needs checkpoints to compare: {_EXAMPLE}")
    entries = [spec] if isinstance(spec, str) else [str(s) for s in spec]
    found: dict[Path, None] = {}
    for entry in entries:
        path = Path(entry).expanduser()
        if any(ch in entry for ch in "*?["):
            matches = [Path(m) for m in glob.glob(str(path)) if Path(m).is_file()]
            if not matches:
                raise ConfigError(f"checkpoints={entry!r} matches no file; {_EXAMPLE}")
        elif path.is_dir():
            matches = [p for p in path.iterdir() if p.suffix == ".pth" and p.is_file()]
            if not matches:
                raise ConfigError(f"checkpoints={entry!r} is a folder without .pth files; {_EXAMPLE}")
        else:
            matches = [path]
        for m in matches:
            found.setdefault(m, None)
    return sorted(found, key=lambda p: natural_key(str(p)))


def _inputs(cfg: Config) -> tuple[list[tuple[str, Path]], bool]:
    """(inputs, strict): one ``image`` (or the demo scene) is strict; ``images`` (list, folder, glob) lists
    unreadable files as failures."""
    check_inputs(cfg)
    if cfg.images.paths is None:
        return named_inputs(image_paths(cfg)), True
    return selected_inputs(cfg.images.paths, cfg.images.limit, cfg.images.shard), False


def _record_all(source: FeatureSource, images: Sequence[InputImage], batch_size: int) -> list[ImageFeatures]:
    out: list[ImageFeatures] = []
    for start in range(0, len(images), batch_size):
        out += source.features(images[start : start + batch_size])
    return out


def _entry(label: str, path: Path, source: FeatureSource | None, reason: str | None) -> dict[str, Any]:
    """The manifest's line for one checkpoint: path, sha256, key-match counts, or why it failed."""
    status = "ok" if reason is None else "failed"
    entry: dict[str, Any] = {"checkpoint": label, "path": os.path.abspath(path), "status": status}
    if source is not None:
        m = source.model_record()
        entry |= {
            "sha256": m.sha256,
            "matched_keys": m.matched_keys,
            "missing_keys": m.missing_keys,
            "unexpected_keys": m.unexpected_keys,
        }
    if reason is not None:
        entry["reason"] = reason
    return entry


def run_checkpoints(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> RunResult:
    """Images through ``cfg.model`` with each checkpoint of ``cfg.checkpoints``: per level frames, GIF, strip and
    change plot on one colour range, and the manifest."""
    settings = DrawSettings.from_config(cfg)
    if cfg.experiment.frame_ms <= 0:
        raise ConfigError(f"experiment.frame_ms={cfg.experiment.frame_ms} must be a positive duration in ms, e.g. 700")
    paths = collect_checkpoints(cfg.checkpoints)
    labels = unique_ids(paths)  # frame labels: the stems, made unique (epoch_1, epoch_1-2)
    inputs, strict = _inputs(cfg)
    batches = ImageBatches(inputs, 1, strict, cfg.images.max_pixels, cfg.model.bboxes)
    images = [im for batch in batches for im in batch]
    plan_model(replace(cfg.model, checkpoint=None))  # a bad model config is one error, not one per checkpoint
    folder = RunFolder.open(out_dir, resolved, cfg.output.overwrite, [im.image_id for im in images])
    timer, cache = Timer(), activation_cache(cfg)
    loaded: list[tuple[str, FeatureSource, list[ImageFeatures]]] = []
    failures: list[Failure] = list(batches.failures)
    entries = []
    for label, path in zip(labels, paths, strict=True):
        source = None
        try:
            source = FeatureSource(replace(cfg.model, checkpoint=str(path)), cfg.recorder, cache, timer)
            items = _record_all(source, images, cfg.images.batch_size) if images else []
        except ModelError as err:
            failures.append(Failure(str(path), str(err)))
            entries.append(_entry(label, path, None, str(err)))
            continue
        except FeatvisError:
            raise  # a recorder or config problem fails every checkpoint alike
        except Exception as err:
            reason = f"model failed: {error_line(err)}"
            failures.append(Failure(str(path), reason))
            entries.append(_entry(label, path, None, reason))
            continue
        loaded.append((label, source, items))
        entries.append(_entry(label, path, source, None))
    outputs: list[FrameRecord] = []
    levels: list[dict[str, Any]] = []
    notes: list[str] = []
    image_records: list[ImageRecord] = []
    for i, im in enumerate(images if loaded else []):
        last = loaded[-1][2][i]
        g = last.geometry
        counts = prediction_counts(last.predictions, settings)
        stored: dict[str, Any] = {}
        if settings.write_maps:  # the input once, for the report page to draw the maps on
            stored = {"image_file": image_file(im.image_id), "image_file_hw": stored_image_hw(g)}
            write_input_image(out_dir, im.image_id, im.array, stored["image_file_hw"])
        image_records.append(image_record(im, g, last.predictions, settings, **counts, **stored))
        notes += [f"{im.image_id}: {note}" for note in im.notes]
        keys: list[LevelKey] = list(last.features)
        for key in keys:
            frames = [
                Frame(label, items[i].features[key], items[i].geometry, items[i].predictions)
                for label, _, items in loaded
                if key in items[i].features
            ]
            records, entry, level_notes = write_sequence(
                out_dir, im.image_id, im.array, key, frames, settings, cfg.experiment.frame_ms
            )
            outputs += records
            levels.append(entry)
            notes += [n for n in level_notes if n not in notes]
        notes += [f"{im.image_id}: {n}" for n in last.notes]
    model_notes = [n for _, s, _ in loaded for n in s.model_notes()]
    notes = folder.notes + model_notes + non_finite_notes(outputs) + sorted({o.note for o in outputs if o.note}) + notes
    sequences = [lv[k] for lv in levels for k in ("gif", "strip", "change_plot") if lv.get(k)]
    files = [o.file for o in outputs] + [a["file"] for o in outputs for a in o.arrays.values()] + sequences
    files += [i.image_file for i in image_records if i.image_file]
    files = list(dict.fromkeys(files))
    folder.record("checkpoints", files, {"checkpoints": [e["checkpoint"] for e in entries]})
    result = RunResult(
        experiment="checkpoints",
        out_dir=out_dir,
        config=resolved,
        models=tuple(s.model_record() for _, s, _ in loaded),
        images=tuple(image_records),
        outputs=tuple(outputs),
        failures=tuple(failures),
        notes=tuple(notes),
        timings=timer.seconds,
        extra={**cache_summary(cache, [s for _, s, _ in loaded]), "checkpoints": entries, "levels": levels},
    )
    result.save()
    return result
