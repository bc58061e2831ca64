"""``experiment=diff``: the same images through two models, compared level by level.

Levels are paired by name after recording (``p3`` of model A with ``p3`` of model B; levels only one side has are
named in a note), never by order. Each map is cropped to its own valid region first; maps on different grids are
brought to the smaller grid; maps with different channel counts are compared through their reduced maps (and CKA,
which needs no channel match).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.drawing.layout import caption_band
from featvis_run.errors import ConfigError, FeatvisError, RunInterrupted, error_line
from featvis_run.experiments.common import activation_cache, cache_summary, resume_hint
from featvis_run.experiments.diff_levels import (
    DIFF_LABELS,
    DiffSide,
    ReducedLevel,
    add_diff_stats,
    diff_side,
    draw_reduced_level,
    level_numbers,
    level_ranges,
    reduce_level,
    side_labels,
)
from featvis_run.experiments.draw import box_cap_note, finite_stats, image_record, prediction_counts, save_arrays
from featvis_run.experiments.inputs import ImageBatches, check_inputs, image_paths, named_inputs, selected_inputs
from featvis_run.experiments.pipeline import drawing_pool, prefetch
from featvis_run.experiments.settings import DrawSettings
from featvis_run.experiments.stored import image_file, map_caption, stored_image_hw, write_input_image
from featvis_run.maps.geometry import cell_placement, geometry_record, valid_cells
from featvis_run.maps.scales import RangeBook
from featvis_run.models.base import ImageFeatures
from featvis_run.models.source import FeatureSource
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import Config
from featvis_run.store.images import InputImage
from featvis_run.store.manifest import Failure, ImageRecord, MapRecord, RunResult
from featvis_run.store.outputs import safe_name, write_array, write_image
from featvis_run.store.run_folder import RunFolder
from featvis_run.timing import Timer

__all__ = ["DiffSide", "paired_levels", "run_diff"]


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


class _DiffRun:
    """Compares the paired levels of two feature sources image by image; collects records and comparisons."""

    def __init__(
        self,
        cfg: Config,
        folder: RunFolder,
        settings: DrawSettings,
        sources: tuple[FeatureSource, ...],
        run_ranges: dict[str, Any] | None = None,
        pool: Executor | None = None,
    ):
        self.pool = pool
        self.folder, self.out_dir, self.settings, self.use_norm = folder, folder.out_dir, settings, cfg.use_norm
        self.mode, self.max_pixels = cfg.experiment.diff_mode.value, cfg.images.max_pixels
        self.source_a, self.source_b = sources
        a, b = cfg.model_a, cfg.model_b
        self.labels = side_labels(a.name, a.checkpoint, b.name, b.checkpoint) if a and b else ("A", "B")
        self.run_ranges = run_ranges
        self.outputs: list[MapRecord] = []
        self.comparisons: list[dict[str, Any]] = []
        self.images: list[ImageRecord] = []
        self.failures: list[Failure] = []
        self.notes: set[str] = set()

    def features(self, im: InputImage, strict: bool) -> tuple[ImageFeatures, ImageFeatures] | None:
        """One image's maps from both models; None (and a listed failure) when a model fails, unless ``strict``."""
        try:
            (item_a,) = self.source_a.features([im])
            (item_b,) = self.source_b.features([im])
        except FeatvisError:
            raise
        except Exception as err:
            if strict:
                raise
            self.failures.append(Failure(str(im.path), f"model failed: {error_line(err)}"))
            return None
        return item_a, item_b

    def reduced(
        self, item_a: ImageFeatures, item_b: ImageFeatures
    ) -> tuple[list[tuple[LevelKey, LevelKey, ReducedLevel]], str | None]:
        """Every level both models recorded, paired by name and reduced; and a note on the unpaired ones."""
        pairs, note = paired_levels(list(item_a.features), list(item_b.features))
        levels = []
        for level, key_a, key_b in pairs:
            a = diff_side(self.labels[0], item_a.features[key_a], item_a.geometry, self.use_norm)
            b = diff_side(self.labels[1], item_b.features[key_b], item_b.geometry, self.use_norm)
            levels.append((key_a, key_b, reduce_level(level, a, b, self.settings, self.mode)))
        return levels, note

    def process(self, im: InputImage, strict: bool) -> None:
        """Record one image through both models and draw every level they share (a model failure is listed unless
        ``strict``)."""
        items = self.features(im, strict)
        if items is None:
            return
        item_a, item_b = items
        levels, note = self.reduced(item_a, item_b)
        notes = [f"{im.image_id}: {n}" for n in im.notes]
        notes += [n for n in (note, *item_a.notes, *item_b.notes) if n]
        started = time.perf_counter()
        ranges = level_ranges(self.settings.scale, [lv for *_, lv in levels], self.mode, self.run_ranges)

        g = item_a.geometry
        stored: dict[str, Any] = {}
        if self.settings.write_maps:  # the input once, for the report page to draw the maps on
            stored = {"image_file": image_file(im.image_id), "image_file_hw": stored_image_hw(g)}
            write_input_image(self.out_dir, im.image_id, im.array, stored["image_file_hw"])

        def image_entry() -> dict[str, Any]:
            counts = prediction_counts(item_a.predictions, self.settings)
            capped = box_cap_note(im.image_id, counts, self.settings.render.max_boxes)
            image = image_record(im, g, item_a.predictions, self.settings, **counts, **stored)
            return {"image": asdict(image), "notes": notes + ([capped] if capped else [])}

        def draw(level: tuple[LevelKey, LevelKey, ReducedLevel]) -> tuple[MapRecord, dict[str, Any]]:
            key_a, key_b, lv = level
            return self._level(im, key_a, key_b, lv, (ranges[("diff", lv.level)], ranges[("sides", lv.level)]))

        if self.pool is None:
            drawn = [draw(level) for level in levels]
        else:
            futures = [self.pool.submit(draw, level) for level in levels]
            try:
                drawn = [future.result() for future in futures]  # in order
            except KeyboardInterrupt:  # Ctrl-C: the image's levels are being drawn; finish and journal it
                drawn = [future.result() for future in futures]
                self._record(im, image_entry(), drawn)
                raise
        self.source_a.timer.add("render", started)
        self._record(im, image_entry(), drawn)

    def _record(self, im: InputImage, entry: dict[str, Any], drawn: list[tuple[MapRecord, dict[str, Any]]]) -> None:
        """Journal a drawn image (every file it wrote) and add it to the run."""
        entry |= {"outputs": [asdict(record) for record, _ in drawn], "comparisons": [c for _, c in drawn]}
        files = [f for _, c in drawn for f in (c["diff_file"], c["panel_file"]) if f]
        files += [a["file"] for record, _ in drawn for a in record.arrays.values()]
        files += [entry["image"]["image_file"]] if entry["image"].get("image_file") else []
        self.folder.record(im.image_id, files, entry)
        self.restore(entry)

    def restore(self, entry: dict[str, Any]) -> None:
        """Add a finished image (drawn now, or by an earlier run in this folder) to the run."""
        self.images.append(ImageRecord(**entry["image"]))
        self.outputs += [MapRecord(**r) for r in entry["outputs"]]
        self.comparisons += entry["comparisons"]
        self.notes.update(entry["notes"])

    def _level(
        self, im: InputImage, key_a: LevelKey, key_b: LevelKey, lv: ReducedLevel, ranges: tuple[Any, Any]
    ) -> tuple[MapRecord, dict[str, Any]]:
        level = lv.level
        base = self.out_dir / safe_name(im.image_id)
        diff_file = base / "diff" / f"{safe_name(level)}.{self.settings.fmt}"
        rel = panel_rel = None
        if self.settings.write_pictures:
            numbers, picture, panel = draw_reduced_level(im.array, lv, self.settings, self.mode, ranges)
            if self.settings.caption:
                what = f"{lv.a.name} vs {lv.b.name}: {DIFF_LABELS[self.mode]}"
                picture = caption_band(picture, map_caption("diff", level, what, numbers["scale"]))
            rel = str(write_image(diff_file, picture).relative_to(self.out_dir))
            panel_file = write_image(base / "panel" / f"{safe_name(level)}.{self.settings.fmt}", panel)
            panel_rel = str(panel_file.relative_to(self.out_dir))
        else:  # output.pictures=maps: the arrays only (the diff's, and each side's next to where the panel goes)
            numbers = level_numbers(lv, self.mode, ranges)
        arrays = self._arrays(diff_file, lv)
        comparison = {"image": im.image_id, "level": level, "layer_a": key_a.layer, "layer_b": key_b.layer}
        comparison |= {"label_a": lv.a.name, "label_b": lv.b.name}  # model names, or checkpoint stems of one model
        comparison |= numbers | {"diff_file": rel, "panel_file": panel_rel}
        sides = (
            ("a", lv.a.full_hw, lv.a.geometry),
            ("b", lv.b.full_hw, lv.b.geometry),
            ("diff", lv.full_hw, lv.geometry),
        )
        for name, full_hw, geometry in sides:  # where each map lies on the image (the page draws A | B | diff)
            stride, origin = cell_placement(full_hw, geometry)
            comparison[f"placement_{name}"] = {
                "stride_hw": list(stride),
                "cell_origin": list(origin),
                "geometry": geometry_record(geometry),
            }
        stride_hw, cell_origin = cell_placement(lv.full_hw, lv.geometry)
        maps = lv.diff.maps
        # on A's grid the image covers its valid cells; a resized common grid covers just the image
        valid = valid_cells(lv.a.full_hw, lv.a.geometry) if numbers["resized_to"] is None else maps.shape[-2:]
        record = MapRecord(
            image=im.image_id,
            layer="diff",
            level=level,
            shape=tuple(int(v) for v in maps.shape),
            valid_hw=(int(valid[0]), int(valid[1])),
            reducer=f"{self.mode} {lv.diff.reducer}",
            channels=lv.diff.channels,
            stats=finite_stats(maps),
            file=rel or arrays["map"]["file"],
            note=numbers["note"],
            non_finite=int(maps.size - np.count_nonzero(np.isfinite(maps))),
            scale=numbers["scale"],
            arrays=arrays,
            stride_hw=stride_hw,
            cell_origin=cell_origin,
        )
        return record, comparison

    def _arrays(self, diff_file: Path, lv: ReducedLevel) -> dict[str, Any]:
        """``output.save_arrays``: the diff map next to its picture; each side's drawn map and (C, H, W) features
        next to the panel, as ``<level>.a.npy``, ``<level>.a.features.npy`` (and ``.b``)."""
        out = save_arrays(diff_file, self.out_dir, self.settings, lv.diff, None)
        panel = diff_file.parent.parent / "panel"
        for name, side, red in (("a", lv.a, lv.side_a), ("b", lv.b, lv.side_b)):
            stem = panel / f"{safe_name(lv.level)}.{name}"
            if self.settings.save_maps:
                arr = red.maps[0] if red.kind == "single" else red.maps
                path = write_array(stem.with_name(stem.name + ".npy"), arr.astype(np.float32))
                out[f"map_{name}"] = {"file": str(path.relative_to(self.out_dir)), "shape": list(arr.shape)}
            if self.settings.save_features:
                path = write_array(stem.with_name(stem.name + ".features.npy"), side.feat.astype(np.float32))
                out[f"features_{name}"] = {"file": str(path.relative_to(self.out_dir)), "shape": list(side.feat.shape)}
        return out

    def stats_pass(
        self, images: Sequence[tuple[str, Path]], timer: Timer, boxes: Sequence[Sequence[float]] | None = None
    ) -> dict[str, Any]:
        """The statistics pass of ``output.scale=per_level/per_run``: every image's diffs and sides reduced before
        anything is drawn (groups ``diff:<group>``, ``sides:<group>``). Failing images are left to the drawing."""
        started = time.perf_counter()
        spec = self.settings.scale
        books = {"diff": RangeBook(spec, signed=self.mode == "signed"), "sides": RangeBook(spec)}
        failures = len(self.failures)
        for (im,) in ImageBatches(list(images), 1, False, self.max_pixels, boxes):
            items = self.features(im, strict=False)
            if items is not None:
                add_diff_stats(books, [lv for *_, lv in self.reduced(*items)[0]])
        del self.failures[failures:]  # listed when drawn
        timer.add("scale_stats", started)
        return {f"{name}:{group}": rng for name, book in books.items() for group, rng in book.ranges().items()}


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
    folder = RunFolder.open(out_dir, resolved, cfg.output.overwrite, [image_id for image_id, _ in inputs])
    finished = {image_id: entry for image_id, _ in inputs if (entry := folder.finished(image_id))}
    boxes = cfg.model_a.bboxes if cfg.model_a.bboxes is not None else cfg.model_b.bboxes
    batches = ImageBatches([i for i in inputs if i[0] not in finished], 1, strict, cfg.images.max_pixels, boxes)
    decoded = list(batches) if strict else batches  # a bad single image fails before any model is planned
    timer, cache = Timer(), activation_cache(cfg)
    sources = (
        FeatureSource(cfg.model_a, rec_a, cache, timer, key="model_a", side=1),
        FeatureSource(cfg.model_b, rec_b, cache, timer, key="model_b", side=None if cfg.recorder_b else 2),
    )
    with drawing_pool() as pool:
        run = _DiffRun(cfg, folder, settings, sources, pool=pool)
        if settings.scale.needs_stats:
            run.run_ranges = run.stats_pass(inputs, timer, boxes)
        try:
            for entry in finished.values():
                run.restore(entry)
            for (im,) in prefetch(decoded):
                run.process(im, strict)
        except KeyboardInterrupt:  # the image being drawn was finished and journaled (see _DiffRun.process)
            raise RunInterrupted(len(run.images), len(inputs), resume_hint(cfg, out_dir)) from None
    notes = folder.notes + [n for s in sources for n in s.model_notes()]
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
            "scale": {
                "mode": settings.scale.mode,
                "clip_percentile": settings.scale.clip_percentile,
                **({"range": list(settings.scale.fixed)} if settings.scale.fixed else {}),
                **({"ranges": run.run_ranges} if run.run_ranges is not None else {}),
            },
            "comparisons": run.comparisons,
        },
    )
    result.save()
    return result
