"""Images through one model in batches, every recorded level drawn: the body of ``single`` and ``multi_image``."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from featvis_run.drawing.layout import contact_sheet
from featvis_run.errors import FeatvisError
from featvis_run.experiments.common import activation_cache, cache_summary, progress_bar
from featvis_run.experiments.draw import draw_levels
from featvis_run.experiments.inputs import ImageBatches
from featvis_run.experiments.settings import DrawSettings
from featvis_run.models.source import FeatureSource
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import Config
from featvis_run.store.images import InputImage
from featvis_run.store.manifest import Failure, ImageRecord, MapRecord, RunResult
from featvis_run.store.outputs import safe_name, write_image
from featvis_run.timing import Timer

__all__ = ["run_images"]


class _ImageRun:
    """Draws every level of batches of images from one feature source; collects records and contact thumbnails."""

    def __init__(self, source: FeatureSource, settings: DrawSettings, out_dir: Path, thumb_height: int):
        self.source, self.settings, self.out_dir, self.thumb_height = source, settings, out_dir, thumb_height
        self.outputs: list[MapRecord] = []
        self.images: list[ImageRecord] = []
        self.failures: list[Failure] = []
        self.notes: list[str] = []
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
            self.notes += [f"{im.image_id}: {note}" for note in item.notes]
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

    def contact_sheets(self) -> list[dict[str, str]]:
        """Write one sheet per layer/level with every image's picture; returns their manifest entries."""
        sheets = []
        for key, thumbs in self.thumbs.items():
            sheet = contact_sheet([t for _, t in thumbs], [name for name, _ in thumbs])
            target = self.out_dir / "contact" / safe_name(key.layer) / f"{safe_name(key.level)}.png"
            path = write_image(target, sheet)
            sheets.append({"layer": key.layer, "level": key.level, "file": str(path.relative_to(self.out_dir))})
        return sheets


def _thumbnail(picture: np.ndarray, height: int) -> np.ndarray:
    h, w = picture.shape[:2]
    width = max(1, round(w * height / h))
    return cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_NEAREST)


def run_images(
    cfg: Config, out_dir: Path, resolved: dict[str, Any], inputs: Sequence[tuple[str, Path]], experiment: str
) -> RunResult:
    """Draw ``inputs`` through ``cfg.model`` and save the manifest.

    Args:
        cfg: the run's config.
        out_dir: the run folder.
        resolved: the resolved config, recorded in the manifest.
        inputs: (output id, path) of the images.
        experiment: ``single`` (an unreadable image is an error, checked before the model is planned) or
            ``multi_image`` (an unreadable image is listed as a failure and the others go on).
    """
    strict = experiment == "single"
    settings = DrawSettings.from_config(cfg)
    timer = Timer()
    cache = activation_cache(cfg)
    batches = ImageBatches(inputs, cfg.images.batch_size, strict)
    decoded = list(batches) if strict else batches  # a bad single image fails before the model is planned
    source = FeatureSource(cfg.model, cfg.recorder, cache, timer)
    thumb_height = cfg.experiment.contact_tile if not strict and cfg.experiment.contact_sheet else 0
    run = _ImageRun(source, settings, out_dir, thumb_height)
    begun = time.perf_counter()
    with progress_bar(enabled=not strict) as progress:
        task = progress.add_task("images", total=len(batches), rate="") if progress else None
        for batch in decoded:
            run.process(batch)
            if progress:
                done = len(run.images) + len(run.failures) + len(batches.failures)
                rate = f"{done / max(time.perf_counter() - begun, 1e-9):.2f} img/s"
                progress.update(task, completed=done, rate=rate)
    sheets = run.contact_sheets() if run.thumbs else []
    notes = [n for n in [source.random_init_note()] if n]
    notes += sorted({o.note for o in run.outputs if o.note}) + run.notes
    result = RunResult(
        experiment=experiment,
        out_dir=out_dir,
        config=resolved,
        models=(source.model_record(),),
        images=tuple(run.images),
        outputs=tuple(run.outputs),
        failures=(*batches.failures, *run.failures),
        notes=tuple(notes),
        timings=timer.seconds,
        extra={**cache_summary(cache, [source]), **({"contact_sheets": sheets} if sheets else {})},
    )
    result.save()
    return result
