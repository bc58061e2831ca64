"""The experiments ``run`` dispatches to, by ``experiment.name``: ``single``, ``multi_image`` (and ``diff``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.errors import FeatvisError, InputError
from featvis_run.features import LevelKey, extract_levels
from featvis_run.images import collect_images, load_image, select_images
from featvis_run.outputs import safe_name, write_image
from featvis_run.render import contact_sheet
from featvis_run.results import Failure, ImageRecord, MapRecord, RunResult
from featvis_run.runner import DrawSettings, Timer, draw_levels, image_paths, load_inputs, model_record, unique_ids
from featvis_run.schema import Config, Mode, RecorderConfig

__all__ = [
    "EXPERIMENTS",
    "RecordedModel",
    "list_model_layers",
    "progress_bar",
    "random_init_note",
    "run_multi_image",
    "run_single",
]


def random_init_note(det: Any) -> str | None:
    """The loud warning for a model without a checkpoint, or None."""
    if not det.checkpoint.random_init:
        return None
    return (
        f"RANDOM INIT: {det.name} has no checkpoint (model.checkpoint=null), weights are random (seed "
        f"{det.checkpoint.seed}); maps show an untrained network. Pass model.checkpoint=/path/to/weights.pth"
    )


def list_model_layers(det: Any, image: Any, out_dir: Path) -> list[Any]:
    """Every module of the detector with the shapes it outputs on ``image``; also written to ``layers.json``."""
    from dataclasses import asdict

    from featvis_run.mmdet_adapter import run_batch
    from featvis_run.outputs import write_json
    from featvis_run.recorder import list_layers

    layers = list_layers(det.model, lambda: run_batch(det, [image]))
    write_json(out_dir / "layers.json", [asdict(layer) for layer in layers])
    return layers


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + max(1, size)]


def progress_bar(total: int, enabled: bool) -> Any:
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


class RecordedModel:
    """A loaded detector with its recorder: :meth:`forward` returns detections and every level's maps."""

    def __init__(self, det: Any, recorder: RecorderConfig, timer: Timer):
        from featvis_run.recorder import FeatureRecorder

        self.det, self.timer = det, timer
        self.recorders, self.mappings = recorder.parsed()
        self.recorder = FeatureRecorder(det.model, self.recorders)

    def __enter__(self) -> RecordedModel:
        self.recorder.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.recorder.__exit__(*exc)

    def forward(self, images: Sequence[np.ndarray]) -> tuple[list[Any], dict[LevelKey, np.ndarray]]:
        """One batch: detector results per image and every level's (N, C, H, W) map."""
        from featvis_run.mmdet_adapter import run_batch

        self.recorder.clear()
        started = time.perf_counter()
        results = run_batch(self.det, images)
        self.timer.add("forward", started)
        return results, extract_levels(self.recorder.records, self.recorders, self.mappings, batch=len(images))


class _ImageRun:
    """Runs batches of images through one loaded detector with the recorder attached, drawing every level."""

    def __init__(self, cfg: Config, det: Any, settings: DrawSettings, out_dir: Path):
        self.det, self.settings, self.out_dir = det, settings, out_dir
        self.timer = Timer()
        self.model = RecordedModel(det, cfg.recorder, self.timer)
        self.outputs: list[MapRecord] = []
        self.images: list[ImageRecord] = []
        self.failures: list[Failure] = []
        self.thumbs: dict[LevelKey, list[tuple[str, np.ndarray]]] = {}
        self.thumb_height = 0

    def process(self, batch: Sequence[tuple[str, Path, np.ndarray]]) -> None:
        """Forward and draw a batch; if the batch fails in the model, retry its images one by one."""
        try:
            results, features = self.model.forward([img for _, _, img in batch])
        except FeatvisError:
            raise  # a config problem (e.g. a bad mapping) fails every image alike
        except Exception as err:
            if len(batch) > 1:
                for item in batch:
                    self.process([item])
                return
            self.failures.append(Failure(str(batch[0][1]), f"model failed: {type(err).__name__}: {err}"))
            return
        started = time.perf_counter()
        for i, ((image_id, path, image), res) in enumerate(zip(batch, results, strict=True)):
            per_image = {key: maps[i] for key, maps in features.items()}
            drawn = draw_levels(image_id, image, per_image, res.geometry, res.detections, self.settings, self.out_dir)
            for record, picture in drawn:
                self.outputs.append(record)
                if self.thumb_height:
                    key = LevelKey(record.layer, record.level)
                    self.thumbs.setdefault(key, []).append((image_id, _thumbnail(picture, self.thumb_height)))
            g = res.geometry
            self.images.append(ImageRecord(str(path), g.ori_hw, g.input_hw, len(res.detections.boxes)))
        self.timer.add("render", started)


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


def _run_images(cfg: Config, out_dir: Path, resolved: dict[str, Any], paths: list[Path], experiment: str) -> Any:
    strict = experiment == "single"
    timer = Timer()
    # Validate everything cheap before torch and mmdet are even imported.
    settings = DrawSettings.from_config(cfg) if cfg.mode is Mode.draw else None
    cfg.recorder.parsed()
    if cfg.images.batch_size <= 0:
        from featvis_run.errors import ConfigError

        raise ConfigError(f"images.batch_size={cfg.images.batch_size} must be a positive number of images")
    preloaded = load_inputs(paths) if strict or cfg.mode is Mode.layers else None
    from featvis_run.mmdet_adapter import load_detector

    started = time.perf_counter()
    det = load_detector(cfg.model)
    timer.add("model_load", started)
    if cfg.mode is Mode.layers:
        return list_model_layers(det, preloaded[0], out_dir)
    run = _ImageRun(cfg, det, settings, out_dir)
    run.thumb_height = cfg.experiment.contact_tile if experiment != "single" and cfg.experiment.contact_sheet else 0
    ids = unique_ids(paths)
    items = list(zip(ids, paths, preloaded or [None] * len(paths), strict=True))
    begun = time.perf_counter()
    with run.model, progress_bar(len(items), enabled=not strict) as progress:
        task = progress.add_task("images", total=len(items), rate="") if progress else None
        for chunk in _batches(items, cfg.images.batch_size):
            loaded = []
            for image_id, path, image in chunk:
                try:
                    loaded.append((image_id, path, image if image is not None else load_image(path, "images")))
                except InputError as err:
                    run.failures.append(Failure(str(path), str(err)))
            if loaded:
                run.process(loaded)
            if progress:
                done = progress.tasks[0].completed + len(chunk)
                rate = f"{done / max(time.perf_counter() - begun, 1e-9):.2f} img/s"
                progress.update(task, advance=len(chunk), rate=rate)
    timer.seconds.update(run.timer.seconds)
    sheets = _write_contact_sheets(run, out_dir) if run.thumbs else []
    notes = [n for n in [random_init_note(det)] if n]
    notes += sorted({o.note for o in run.outputs if o.note})
    result = RunResult(
        experiment=experiment,
        out_dir=out_dir,
        config=resolved,
        models=(model_record(det),),
        images=tuple(run.images),
        outputs=tuple(run.outputs),
        failures=tuple(run.failures),
        notes=tuple(notes),
        timings=timer.seconds,
        extra={"contact_sheets": sheets} if sheets else {},
    )
    result.save()
    return result


def run_single(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> Any:
    """One image (``image``, or the demo scene) through one model: one file per recorded layer and level."""
    return _run_images(cfg, out_dir, resolved, image_paths(cfg), "single")


def run_multi_image(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> Any:
    """Many images (``images``: list, folder, glob) through one model loaded once, in batches."""
    paths = select_images(collect_images(cfg.images.paths), cfg.images.limit, cfg.images.shard)
    return _run_images(cfg, out_dir, resolved, paths, "multi_image")


def _run_diff(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> Any:
    from featvis_run.diff_experiment import run_diff

    return run_diff(cfg, out_dir, resolved)


EXPERIMENTS = {"single": run_single, "multi_image": run_multi_image, "diff": _run_diff}
