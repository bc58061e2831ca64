"""The experiments ``run`` dispatches to, by ``experiment.name``: ``single``, ``multi_image`` and ``diff``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.cache import ActivationCache
from featvis_run.errors import ConfigError, FeatvisError, InputError
from featvis_run.features import LevelKey
from featvis_run.images import collect_images, read_image, select_images
from featvis_run.outputs import safe_name, write_image
from featvis_run.render import contact_sheet
from featvis_run.results import Failure, ImageRecord, MapRecord, RunResult
from featvis_run.runner import DrawSettings, Timer, check_inputs, draw_levels, image_paths, unique_ids
from featvis_run.schema import Config, Mode
from featvis_run.sources import FeatureSource, InputImage

__all__ = [
    "EXPERIMENTS",
    "activation_cache",
    "cache_summary",
    "input_images",
    "list_model_layers",
    "named_inputs",
    "progress_bar",
    "run_multi_image",
    "selected_inputs",
    "run_single",
]


def activation_cache(cfg: Config) -> ActivationCache:
    """The configured cache (``cache=off``: disabled)."""
    return ActivationCache(Path(cfg.cache.dir).expanduser() if cfg.cache.enabled else None)


def cache_summary(cache: ActivationCache, sources: Sequence[FeatureSource]) -> dict[str, Any]:
    """Manifest fields: whether the run was served from the cache, model calls made, cache counters and size."""
    passes = sum(s.forward_passes for s in sources)
    return {
        "pid": os.getpid(),
        "cache_hit": cache.enabled and passes == 0 and cache.stats.hits > 0,
        "forward_passes": passes,
        "cache": {
            "enabled": cache.enabled,
            "dir": str(cache.root) if cache.root else None,
            "hits": cache.stats.hits,
            "misses": cache.stats.misses,
            "corrupt_recomputed": cache.stats.corrupt,
            "written_bytes": cache.stats.written_bytes,
            "size_bytes": cache.size_bytes(),
        },
    }


def list_model_layers(source: FeatureSource, image: np.ndarray, out_dir: Path) -> list[Any]:
    """Every module of the detector with the shapes it outputs on ``image``; also written to ``layers.json``."""
    from dataclasses import asdict

    from featvis_run.mmdet_adapter import run_batch
    from featvis_run.outputs import write_json
    from featvis_run.recorder import list_layers

    det = source.detector()
    layers = list_layers(det.model, lambda: run_batch(det, [image]))
    write_json(out_dir / "layers.json", [asdict(layer) for layer in layers])
    return layers


def progress_bar(total: int, enabled: bool) -> Any:
    """A rich progress bar on stderr (images done / total, rate, ETA), or a no-op context."""
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]images"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def named_inputs(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(output id, path) pairs: ids are the stems, made unique over ``paths``."""
    return list(zip(unique_ids(paths), paths, strict=True))


def selected_inputs(spec: str | Sequence[str] | None, limit: int | None, shard: str | None) -> list[tuple[str, Path]]:
    """(output id, path) of the images ``spec`` names, after ``limit`` and ``shard``. Ids are made unique over the
    whole list before sharding, so the shards of one folder write disjoint, mergeable folders."""
    return select_images(named_inputs(collect_images(spec)), limit, shard)


def input_images(
    inputs: Sequence[tuple[str, Path]], batch_size: int, strict: bool, failures: list[Failure]
) -> Iterator[list[InputImage]]:
    """Batches of decoded images. ``strict``: an unreadable image raises; else it is listed in ``failures``."""
    batch: list[InputImage] = []
    for image_id, path in inputs:
        try:
            array, sha = read_image(path, "image" if strict else "images")
        except InputError as err:
            if strict:
                raise
            failures.append(Failure(str(path), str(err)))
            continue
        batch.append(InputImage(image_id, path, array, sha))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class _ImageRun:
    """Draws every level of batches of images from one feature source; collects records and contact thumbnails."""

    def __init__(self, source: FeatureSource, settings: DrawSettings, out_dir: Path, thumb_height: int):
        self.source, self.settings, self.out_dir, self.thumb_height = source, settings, out_dir, thumb_height
        self.outputs: list[MapRecord] = []
        self.images: list[ImageRecord] = []
        self.failures: list[Failure] = []
        self.thumbs: dict[LevelKey, list[tuple[str, np.ndarray]]] = {}

    def process(self, batch: Sequence[InputImage]) -> None:
        """Draw a batch; if the model fails on the batch, retry its images one by one."""
        try:
            items = self.source.features(batch)
        except FeatvisError:
            raise  # a config problem (e.g. a bad mapping) fails every image alike
        except Exception as err:
            if len(batch) > 1:
                for one in batch:
                    self.process([one])
                return
            self.failures.append(Failure(str(batch[0].path), f"model failed: {type(err).__name__}: {err}"))
            return
        started = time.perf_counter()
        for im, item in zip(batch, items, strict=True):
            drawn = draw_levels(
                im.image_id, im.array, item.features, item.geometry, item.detections, self.settings, self.out_dir
            )
            for record, picture in drawn:
                self.outputs.append(record)
                if self.thumb_height:
                    key = LevelKey(record.layer, record.level)
                    self.thumbs.setdefault(key, []).append((im.image_id, _thumbnail(picture, self.thumb_height)))
            g = item.geometry
            shown = item.detections.above(self.settings.pred_score_thr)
            self.images.append(ImageRecord(os.path.abspath(im.path), g.ori_hw, g.input_hw, len(shown.boxes)))
        self.source.timer.add("render", started)


def _thumbnail(picture: np.ndarray, height: int) -> np.ndarray:
    import cv2

    h, w = picture.shape[:2]
    width = max(1, round(w * height / h))
    return cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_NEAREST)


def _write_contact_sheets(run: _ImageRun, out_dir: Path) -> list[dict[str, str]]:
    sheets = []
    for key, thumbs in run.thumbs.items():
        sheet = contact_sheet([t for _, t in thumbs], [name for name, _ in thumbs])
        path = write_image(out_dir / "contact" / safe_name(key.layer) / f"{safe_name(key.level)}.png", sheet)
        sheets.append({"layer": key.layer, "level": key.level, "file": str(path.relative_to(out_dir))})
    return sheets


def _run_images(
    cfg: Config,
    out_dir: Path,
    resolved: dict[str, Any],
    inputs: list[tuple[str, Path]],
    experiment: str,
) -> Any:
    strict = experiment == "single"
    if cfg.images.batch_size <= 0:
        raise ConfigError(f"images.batch_size={cfg.images.batch_size} must be a positive number of images")
    settings = DrawSettings.from_config(cfg) if cfg.mode is Mode.draw else None
    timer = Timer()
    cache = activation_cache(cfg)
    failures: list[Failure] = []
    batches = input_images(inputs, cfg.images.batch_size, strict, failures)
    first = next(batches, []) if strict or cfg.mode is Mode.layers else None  # a bad single image fails early
    source = FeatureSource(cfg.model, cfg.recorder, cache, timer)
    if cfg.mode is Mode.layers:
        if not first:
            raise InputError(f"no readable image among {len(inputs)} inputs to list the layers with")
        return list_model_layers(source, first[0].array, out_dir)
    thumb_height = cfg.experiment.contact_tile if experiment != "single" and cfg.experiment.contact_sheet else 0
    run = _ImageRun(source, settings, out_dir, thumb_height)
    run.failures = failures
    begun = time.perf_counter()
    with progress_bar(len(inputs), enabled=not strict) as progress:
        task = progress.add_task("images", total=len(inputs), rate="") if progress else None
        for batch in [first] if first else []:
            run.process(batch)
        for batch in batches:
            run.process(batch)
            if progress:
                done = len(run.images) + len(run.failures)
                rate = f"{done / max(time.perf_counter() - begun, 1e-9):.2f} img/s"
                progress.update(task, completed=done, rate=rate)
    sheets = _write_contact_sheets(run, out_dir) if run.thumbs else []
    notes = [n for n in [source.random_init_note()] if n]
    notes += sorted({o.note for o in run.outputs if o.note})
    result = RunResult(
        experiment=experiment,
        out_dir=out_dir,
        config=resolved,
        models=(source.model_record(),),
        images=tuple(run.images),
        outputs=tuple(run.outputs),
        failures=tuple(run.failures),
        notes=tuple(notes),
        timings=timer.seconds,
        extra={**cache_summary(cache, [source]), **({"contact_sheets": sheets} if sheets else {})},
    )
    result.save()
    return result


def run_single(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> Any:
    """One image (``image``, or the demo scene) through one model: one file per recorded layer and level."""
    check_inputs(cfg)
    return _run_images(cfg, out_dir, resolved, named_inputs(image_paths(cfg)), "single")


def run_multi_image(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> Any:
    """Many images (``images``: list, folder, glob) through one model loaded once, in batches."""
    check_inputs(cfg)
    spec = cfg.images.paths if cfg.images.paths is not None else cfg.image  # image=x: a run over that one file
    inputs = selected_inputs(spec, cfg.images.limit, cfg.images.shard)
    return _run_images(cfg, out_dir, resolved, inputs, "multi_image")


def _run_diff(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> Any:
    from featvis_run.diff_experiment import run_diff

    return run_diff(cfg, out_dir, resolved)


EXPERIMENTS = {"single": run_single, "multi_image": run_multi_image, "diff": _run_diff}
