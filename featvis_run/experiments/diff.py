"""``experiment=diff``: the same images through two models, compared level by level.

Levels are paired by name after recording (``p3`` of model A with ``p3`` of model B; levels only one side has are
named in a note), never by order. Each map is cropped to its own valid region first; maps on different grids are
brought to the smaller grid; maps with different channel counts are compared through their reduced maps (and CKA,
which needs no channel match).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.drawing.layout import contact_sheet
from featvis_run.drawing.render import RenderOptions, render_map
from featvis_run.errors import ConfigError, FeatvisError, RunInterrupted
from featvis_run.experiments.common import activation_cache, cache_summary, resume_hint
from featvis_run.experiments.draw import finite_stats, prediction_counts
from featvis_run.experiments.inputs import ImageBatches, check_inputs, image_paths, named_inputs, selected_inputs
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.diff import compare_levels, diff_map, resize_to_common
from featvis_run.maps.geometry import Geometry, crop_valid, valid_cells
from featvis_run.maps.reduce import ReducedMap, reduce_channels, standardize
from featvis_run.models.base import ImageFeatures
from featvis_run.models.source import FeatureSource
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import Config
from featvis_run.store.images import InputImage
from featvis_run.store.manifest import Failure, ImageRecord, MapRecord, RunResult
from featvis_run.store.outputs import safe_name, write_image
from featvis_run.store.run_folder import RunFolder
from featvis_run.timing import Timer

__all__ = ["DiffSide", "paired_levels", "run_diff"]

_DIFF_LABEL = {"abs": "|A-B|", "signed": "A-B", "relative": "|A-B|/(|A|+|B|)"}


def paired_levels(
    keys_a: Sequence[LevelKey], keys_b: Sequence[LevelKey]
) -> tuple[list[tuple[str, LevelKey, LevelKey]], str | None]:
    """Pair two models' recorded levels by level name (``p3`` with ``p3``), never by order.

    A name recorded under several layers on one side pairs only with the same layer on the other. Returns the
    pairs in model A's order and a note naming the levels only one side has; a ConfigError when none pair.
    """

    def index(keys: Sequence[LevelKey]) -> dict[str, list[LevelKey]]:
        out: dict[str, list[LevelKey]] = {}
        for k in keys:
            out.setdefault(k.level, []).append(k)
        return out

    by_a, by_b = index(keys_a), index(keys_b)
    pairs = []
    for key in keys_a:
        others = by_b.get(key.level, [])
        if len(by_a[key.level]) == 1 and len(others) == 1:
            pairs.append((key.level, key, others[0]))
        elif key in others:
            pairs.append((f"{key.layer}.{key.level}", key, key))
    paired_a, paired_b = {a for _, a, _ in pairs}, {b for _, _, b in pairs}
    only_a = [f"{k.layer}/{k.level}" for k in keys_a if k not in paired_a]
    only_b = [f"{k.layer}/{k.level}" for k in keys_b if k not in paired_b]
    if not pairs:
        raise ConfigError(
            f"experiment=diff pairs levels by name, but model A recorded {only_a} and model B {only_b}, with no name "
            "in common; give both the same recorder (or +recorder@recorder_b=... with the same level names)"
        )
    note = None
    if only_a or only_b:
        note = f"levels only one model has, not compared: A {only_a or '-'}, B {only_b or '-'}"
    return pairs, note


@dataclass(frozen=True)
class DiffSide:
    """One model's cropped (C, H, W) map of a level, with what is needed to draw it on the image."""

    name: str
    feat: np.ndarray
    full_hw: tuple[int, int]
    geometry: Geometry


def _side(name: str, maps: np.ndarray, geometry: Geometry, use_norm: bool) -> DiffSide:
    cropped = crop_valid(maps, geometry)
    return DiffSide(name, standardize(cropped) if use_norm else cropped, tuple(maps.shape[-2:]), geometry)


def _single_reducer(settings: DrawSettings) -> tuple[str, str | None]:
    if settings.reducer != "none":
        return settings.reducer, None
    return "squeeze_mean", "channel counts differ, so top-k channels cannot be paired: diffed squeeze_mean maps"


def draw_level(
    image: np.ndarray, level: str, a: DiffSide, b: DiffSide, settings: DrawSettings, mode: str
) -> tuple[dict[str, Any], ReducedMap, np.ndarray, np.ndarray]:
    """Compare one level of two models on one image.

    Args:
        image: the original BGR image.
        level: the level's mapping name.
        a: model A's side (cropped map and placement); b: model B's.
        settings: how maps are reduced and drawn.
        mode: a :class:`~featvis_run.maps.modes.DiffMode` value.

    Returns:
        (numbers for the manifest, the reduced diff, the diff picture, the A | B | diff panel).
    """
    cmp = compare_levels(a.feat, b.feat)
    note = None
    if cmp.elementwise:
        ra, rb, _ = resize_to_common(a.feat, b.feat)
        d = diff_map(ra, rb, mode)
        reduced = reduce_channels(d, settings.reducer, settings.topk, where=f"diff/{level}")
    else:
        reducer, note = _single_reducer(settings)
        ma = reduce_channels(a.feat, reducer).maps
        mb = reduce_channels(b.feat, reducer).maps
        ma, mb, _ = resize_to_common(ma, mb)
        reduced = ReducedMap(diff_map(ma, mb, mode), (), f"{reducer} diff")
        note = note or f"channel counts differ ({a.feat.shape[0]} vs {b.feat.shape[0]}): diffed {reducer} maps"
    if cmp.resized_to is None:  # both maps on A's grid: exact alignment with the image
        full_hw, geometry = a.full_hw, a.geometry
    else:  # a common grid that covers the image (each map was cropped to its valid region)
        full_hw, geometry = reduced.maps.shape[-2:], Geometry.identity(a.geometry.ori_hw)
    opts: RenderOptions = settings.render
    diff_opts = RenderOptions(**{**opts.__dict__, "signed": mode == "signed"})
    diff_picture = render_map(reduced, full_hw, geometry, image, diff_opts)
    side_pictures = []
    for side in (a, b):
        red = reduce_channels(side.feat, settings.reducer, settings.topk, where=f"{side.name}/{level}")
        side_pictures.append(render_map(red, side.full_hw, side.geometry, image, opts))
    labels = [f"A {a.name} {level}", f"B {b.name} {level}", f"{_DIFF_LABEL[mode]} {level}"]
    panel = contact_sheet([*side_pictures, diff_picture], labels, rows=1)
    numbers = {**cmp.to_dict(), "note": note}
    return numbers, reduced, diff_picture, panel


class _DiffRun:
    """Compares the paired levels of two feature sources image by image; collects records and comparisons."""

    def __init__(self, cfg: Config, folder: RunFolder, settings: DrawSettings, sources: tuple[FeatureSource, ...]):
        self.folder, self.out_dir, self.settings, self.use_norm = folder, folder.out_dir, settings, cfg.use_norm
        self.mode = cfg.experiment.diff_mode.value
        self.source_a, self.source_b = sources
        self.outputs: list[MapRecord] = []
        self.comparisons: list[dict[str, Any]] = []
        self.images: list[ImageRecord] = []
        self.failures: list[Failure] = []
        self.notes: set[str] = set()

    def process(self, im: InputImage, strict: bool) -> None:
        """Record one image through both models and draw every level they share (a model failure is listed unless
        ``strict``)."""
        try:
            (item_a,) = self.source_a.features([im])
            (item_b,) = self.source_b.features([im])
        except FeatvisError:
            raise
        except Exception as err:
            if strict:
                raise
            self.failures.append(Failure(str(im.path), f"model failed: {type(err).__name__}: {err}"))
            return
        pairs, note = paired_levels(list(item_a.features), list(item_b.features))
        notes = [n for n in (note, *item_a.notes, *item_b.notes) if n]
        started = time.perf_counter()
        drawn = [self._level(im, level, (item_a, key_a), (item_b, key_b)) for level, key_a, key_b in pairs]
        self.source_a.timer.add("render", started)
        g = item_a.geometry
        counts = prediction_counts(item_a.predictions, self.settings)
        image = ImageRecord(os.path.abspath(im.path), g.ori_hw, g.input_hw, **counts)
        entry = {
            "image": asdict(image),
            "outputs": [asdict(record) for record, _ in drawn],
            "comparisons": [comparison for _, comparison in drawn],
            "notes": notes,
        }
        files = [f for _, c in drawn for f in (c["diff_file"], c["panel_file"])]
        self.folder.record(im.image_id, files, entry)
        self.restore(entry)

    def restore(self, entry: dict[str, Any]) -> None:
        """Add a finished image (drawn now, or by an earlier run in this folder) to the run."""
        self.images.append(ImageRecord(**entry["image"]))
        self.outputs += [MapRecord(**r) for r in entry["outputs"]]
        self.comparisons += entry["comparisons"]
        self.notes.update(entry["notes"])

    def _level(
        self, im: InputImage, level: str, side_a: tuple[ImageFeatures, LevelKey], side_b: tuple[ImageFeatures, LevelKey]
    ) -> tuple[MapRecord, dict[str, Any]]:
        (item_a, key_a), (item_b, key_b) = side_a, side_b
        a = _side(self.source_a.name, item_a.features[key_a], item_a.geometry, self.use_norm)
        b = _side(self.source_b.name, item_b.features[key_b], item_b.geometry, self.use_norm)
        numbers, reduced, picture, panel = draw_level(im.array, level, a, b, self.settings, self.mode)
        base = self.out_dir / safe_name(im.image_id)
        diff_file = write_image(base / "diff" / f"{safe_name(level)}.{self.settings.fmt}", picture)
        panel_file = write_image(base / "panel" / f"{safe_name(level)}.{self.settings.fmt}", panel)
        rel = str(diff_file.relative_to(self.out_dir))
        comparison = {"image": im.image_id, "level": level, "layer_a": key_a.layer, "layer_b": key_b.layer}
        comparison |= numbers | {"diff_file": rel, "panel_file": str(panel_file.relative_to(self.out_dir))}
        maps = reduced.maps
        # on A's grid the image covers its valid cells; a resized common grid covers just the image
        valid = valid_cells(a.full_hw, a.geometry) if numbers["resized_to"] is None else maps.shape[-2:]
        record = MapRecord(
            image=im.image_id,
            layer="diff",
            level=level,
            shape=tuple(int(v) for v in maps.shape),
            valid_hw=(int(valid[0]), int(valid[1])),
            reducer=f"{self.mode} {reduced.reducer}",
            channels=reduced.channels,
            stats=finite_stats(maps),
            file=rel,
            note=numbers["note"],
            non_finite=int(maps.size - np.count_nonzero(np.isfinite(maps))),
        )
        return record, comparison


def _diff_inputs(cfg: Config) -> tuple[list[tuple[str, Path]], bool]:
    """The diff's inputs and whether they are strict (one ``image``: an unreadable file or a model failure is an
    error) or a list (``images``: failures are listed)."""
    check_inputs(cfg)
    if cfg.images.paths is None:
        return named_inputs(image_paths(cfg)), True
    return selected_inputs(cfg.images.paths, cfg.images.limit, cfg.images.shard), False


def run_diff(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> RunResult:
    """Images through model A (``model_a``) and model B (``model_b``): per level diff maps, panels and numbers."""
    if cfg.model_a is None or cfg.model_b is None:
        raise ConfigError("experiment=diff needs two models: model@model_a=retinanet_r101 model@model_b=retinanet_r50")
    settings = DrawSettings.from_config(cfg)
    if settings.target is not None:
        raise ConfigError(
            "experiment=diff compares recorded features, and reducer=gradcam explains one model's detections (the two "
            "models detect different boxes); run reducer=gradcam per model, or diff with reducer=eigencam"
        )
    rec_a, rec_b = cfg.recorder, cfg.recorder_b or cfg.recorder
    inputs, strict = _diff_inputs(cfg)
    folder = RunFolder.open(out_dir, resolved, cfg.output.overwrite)
    finished = {image_id: entry for image_id, _ in inputs if (entry := folder.finished(image_id))}
    batches = ImageBatches([i for i in inputs if i[0] not in finished], 1, strict)
    decoded = list(batches) if strict else batches  # a bad single image fails before any model is planned
    timer, cache = Timer(), activation_cache(cfg)
    sources = (
        FeatureSource(cfg.model_a, rec_a, cache, timer, key="model_a", side=1),
        FeatureSource(cfg.model_b, rec_b, cache, timer, key="model_b", side=None if cfg.recorder_b else 2),
    )
    run = _DiffRun(cfg, folder, settings, sources)
    try:
        for entry in finished.values():
            run.restore(entry)
        for (im,) in decoded:
            run.process(im, strict)
    except KeyboardInterrupt:
        raise RunInterrupted(len(run.images), len(inputs), resume_hint(cfg, out_dir)) from None
    notes = [n for s in sources for n in s.model_notes()]
    notes += sorted({c["note"] for c in run.comparisons if c["note"]} | run.notes)
    result = RunResult(
        experiment="diff",
        out_dir=out_dir,
        config=resolved,
        models=tuple(s.model_record() for s in sources),
        images=tuple(run.images),
        outputs=tuple(run.outputs),
        failures=(*batches.failures, *run.failures),
        notes=tuple(notes),
        timings=timer.seconds,
        extra={
            **cache_summary(cache, sources),
            "resumed_images": len(finished),
            "diff_mode": run.mode,
            "comparisons": run.comparisons,
        },
    )
    result.save()
    return result
