"""Images through one model in batches, every recorded level drawn: the body of ``single`` and ``multi_image``."""

from __future__ import annotations

import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from featvis_run.analysis.annotations import GroundTruth, run_annotations
from featvis_run.analysis.collector import RunAnalysis
from featvis_run.drawing.layout import caption_band, contact_sheet
from featvis_run.drawing.render import Drawn, with_colorbar
from featvis_run.errors import FeatvisError, RunInterrupted, TargetNotFound, error_line
from featvis_run.experiments.common import (
    ImageRate,
    activation_cache,
    cache_summary,
    progress_bar,
    resume_hint,
)
from featvis_run.experiments.draw import (
    add_run_stats,
    box_cap_note,
    image_record,
    level_jobs,
    non_finite_notes,
    prediction_counts,
    reduce_levels,
)
from featvis_run.experiments.explain import explained_record, feature_source
from featvis_run.experiments.inputs import ImageBatches, picture_ids
from featvis_run.experiments.metrics_run import MetricsPlan, metric_means, run_image_metrics
from featvis_run.experiments.pipeline import drawing_pool, prefetch
from featvis_run.experiments.settings import DrawSettings
from featvis_run.experiments.stored import image_file, map_caption, stored_image_hw, write_input_image
from featvis_run.maps.scales import RangeBook
from featvis_run.models.source import FeatureSource
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import Config
from featvis_run.store.images import InputImage
from featvis_run.store.manifest import Failure, ImageRecord, MapRecord, RunResult
from featvis_run.store.outputs import safe_name, write_image
from featvis_run.store.run_folder import RunFolder
from featvis_run.timing import Timer

__all__ = ["run_images", "run_ranges"]


@dataclass
class _Pending:
    """An image whose levels are being drawn in the pool."""

    image_id: str
    image: ImageRecord
    notes: list[str]
    futures: list[Future]
    analysis: Future | None = None  # its partial statistics and peaks (analysis.channels / analysis.top_images)


class _ImageRun:
    """Draws every level of batches of images from one feature source; collects records and contact thumbnails,
    and journals each finished image in the run folder (so an interrupted run resumes).

    Drawing runs in ``pool``'s threads while the model works on the next batch (OpenCV and numpy release the GIL);
    at most ``max_pending`` images wait to be drawn, so memory stays bounded when drawing falls behind. Images are
    collected, recorded and journaled in input order, so the output does not depend on the threads.
    """

    def __init__(
        self,
        source: FeatureSource,
        settings: DrawSettings,
        folder: RunFolder,
        thumb_height: int,
        pool: Executor | None = None,
        max_pending: int = 4,
        run_ranges: dict[str, tuple[float, float] | None] | None = None,
        strict: bool = False,
        analysis: RunAnalysis | None = None,
    ):
        self.source, self.settings, self.folder, self.thumb_height = source, settings, folder, thumb_height
        self.metrics: MetricsPlan | None = None  # analysis.metrics
        self.truth: dict[str, GroundTruth] = {}  # images.annotations, by image id
        self.draw_gt = False
        self.pool, self.max_pending, self.run_ranges, self.strict = pool, max_pending, run_ranges, strict
        self.analysis = analysis if analysis is not None and analysis.enabled else None
        self.pending: deque[_Pending] = deque()
        self.out_dir = folder.out_dir
        self.outputs: list[MapRecord] = []
        self.images: list[ImageRecord] = []
        self.failures: list[Failure] = []
        self.notes: list[str] = []
        self.thumbs: dict[LevelKey, list[tuple[str, np.ndarray]]] = {}
        self.sheet_scales: dict[LevelKey, set[tuple[float, ...] | None]] = {}
        self._timer_lock = threading.Lock()

    def process(self, batch: Sequence[InputImage]) -> None:
        """Draw a batch; if the model fails on the batch, retry its images one by one."""
        try:
            items = self.source.features(batch)
        except TargetNotFound as err:  # Grad-CAM: this image has nothing the target names
            if len(batch) > 1:
                for one in batch:
                    self.process([one])
                return
            if self.strict:
                raise
            self.failures.append(Failure(str(batch[0].path), str(err)))
            return
        except FeatvisError:
            raise  # a config problem (e.g. a bad mapping) fails every image alike
        except Exception as err:
            if len(batch) > 1:
                for one in batch:
                    self.process([one])
                return
            self.failures.append(Failure(str(batch[0].path), f"model failed: {error_line(err)}"))
            return
        for im, item in zip(batch, items, strict=True):
            notes = [f"{im.image_id}: {note}" for note in (*im.notes, *item.notes)]
            features = item.features
            if self.metrics is not None:  # EigenCAM: its fused level, scored by the metrics
                features = {**features, **self.metrics.extra_levels(features, item.geometry, self.settings)}
            truth = self.truth.get(im.image_id)
            jobs = level_jobs(
                im.image_id,
                im.array,
                features,
                item.geometry,
                item.predictions,
                self.settings,
                self.out_dir,
                self.run_ranges,
                truth.as_detections() if truth is not None and self.draw_gt else None,
            )
            g = item.geometry
            counts = prediction_counts(item.predictions, self.settings)
            capped = box_cap_note(im.image_id, counts, self.settings.render.max_boxes)
            notes += [capped] if capped else []
            explained = explained_record(self.settings, item.predictions)
            extra: dict[str, Any] = {"annotations": truth.record()} if truth is not None else {}
            if self.metrics is not None:
                scored, metric_notes = run_image_metrics(
                    self.metrics, self.settings, self.source, im, item.predictions, features, g, truth
                )
                extra.update(scored)
                notes += metric_notes
            if self.settings.write_maps:  # the input once, for the report page to draw the maps on
                hw = stored_image_hw(g)
                extra |= {"image_file": image_file(im.image_id), "image_file_hw": hw}
                jobs.append(functools.partial(_store_input, self.out_dir, im.image_id, im.array, hw))
            image = image_record(im, g, item.predictions, self.settings, **counts, **explained, **extra)
            futures = [self._submit(job) for job in jobs]
            measured = self._measure(item.features, g)
            self.pending.append(_Pending(im.image_id, image, notes, futures, measured))
            while len(self.pending) > self.max_pending:
                self._collect_oldest()

    def _measure(self, features: dict[LevelKey, np.ndarray], geometry: Any) -> Future | None:
        """An image's analysis partial, measured in the pool like its drawings (None when analysis is off)."""
        if self.analysis is None:
            return None
        return self._submit(functools.partial(self.analysis.measure, features, geometry), "analysis")

    def _submit(self, job: Callable[[], Any], phase: str = "render") -> Future:
        def timed() -> Any:
            started = time.perf_counter()
            try:
                return job()
            finally:
                with self._timer_lock:
                    self.source.timer.add(phase, started)

        if self.pool is not None:
            return self.pool.submit(timed)
        done: Future = Future()
        done.set_result(timed())
        return done

    def _collect_oldest(self) -> None:
        """Wait for the oldest image's drawings; record and journal it."""
        p = self.pending[0]
        drawn = [d for d in (future.result() for future in p.futures) if d is not None]  # None: the stored input
        self.pending.popleft()  # only now: Ctrl-C while waiting leaves the image to :meth:`salvage`
        records = [record for record, _ in drawn]
        self._add(p.image_id, p.image, records, p.notes, [picture for _, picture in drawn])
        payload = {"image": asdict(p.image), "outputs": [asdict(r) for r in records], "notes": p.notes}
        files = [r.file for r in records] + [a["file"] for r in records for a in r.arrays.values()]
        files += [p.image.image_file] if p.image.image_file else []
        if self.analysis is not None and p.analysis is not None:  # written and counted before it is journaled
            files += self.analysis.keep(p.image_id, p.image.path, p.analysis.result())
        self.folder.record(p.image_id, list(dict.fromkeys(files)), payload)

    def finish(self) -> None:
        """Wait for every image still being drawn."""
        started = time.perf_counter()
        while self.pending:
            self._collect_oldest()
        self.source.timer.add("render_wait", started)

    def salvage(self) -> None:
        """After Ctrl-C: let the images already queued finish drawing, and journal each whose pictures are all
        written (a second Ctrl-C stops at once; an image not journaled is drawn again by the rerun)."""
        while self.pending:
            futures = self.pending[0].futures
            wait(futures)
            if any(f.cancelled() or f.exception() is not None for f in futures):
                self.pending.popleft()
                continue
            self._collect_oldest()

    def restore(self, image_id: str, entry: dict[str, Any]) -> None:
        """Take a finished image from the journal of an earlier run in this folder."""
        records = [MapRecord(**r) for r in entry["outputs"]]
        pictures = [cv2.imread(str(self.out_dir / r.file)) for r in records] if self.thumb_height else []
        if self.thumb_height and self.settings.caption:  # the written picture's caption band: the sheet has its own
            pictures = [_uncaptioned(p, r) for p, r in zip(pictures, records, strict=True)]
        self._add(image_id, ImageRecord(**entry["image"]), records, entry.get("notes", []), pictures)

    def _add(
        self, image_id: str, image: ImageRecord, records: list[MapRecord], notes: list[str], pictures: list[Any]
    ) -> None:
        self.images.append(image)
        self.outputs += records
        self.notes += notes
        for record, picture in zip(records, pictures, strict=False):
            if self.thumb_height and picture is not None:
                key = LevelKey(record.layer, record.level)
                self.thumbs.setdefault(key, []).append((image_id, _thumbnail(picture, self.thumb_height)))
                self.sheet_scales.setdefault(key, set()).add(tuple(record.scale) if record.scale else None)

    def contact_sheets(self) -> list[dict[str, str]]:
        """Write one sheet per layer/level with every image's picture, each captioned above its tile with its image,
        the sheet with its level (and, with ``output.colorbar``, one colour bar when every tile shares one range);
        returns their manifest entries."""
        sheets = []
        for key, thumbs in self.thumbs.items():
            sheet = contact_sheet([t for _, t in thumbs], [name for name, _ in thumbs])
            scales = self.sheet_scales.get(key, set())
            shared = next(iter(scales)) if len(scales) == 1 else None
            if shared is not None:
                sheet = with_colorbar(Drawn(sheet, shared), self.settings.render).picture
            title = f"{key.layer} / {key.level}: {len(thumbs)} images"
            title += "" if shared is not None else ", each with its own colour range"
            sheet = caption_band(sheet, title)
            target = self.out_dir / "contact" / safe_name(key.layer) / f"{safe_name(key.level)}.png"
            path = write_image(target, sheet)
            sheets.append({"layer": key.layer, "level": key.level, "file": str(path.relative_to(self.out_dir))})
        return sheets


def _store_input(out_dir: Path, image_id: str, image: np.ndarray, hw: tuple[int, int]) -> None:
    """Write ``<image>/image.jpg`` (a job of the drawing pool; it returns no record)."""
    write_input_image(out_dir, image_id, image, hw)


def _uncaptioned(picture: np.ndarray | None, record: MapRecord) -> np.ndarray | None:
    """A written picture without its caption band (the band is as tall as :func:`caption_band` makes it for the
    picture's width and caption), for a resumed run's contact sheet."""
    if picture is None:
        return None
    band = (
        caption_band(
            picture[:1], map_caption(record.layer, record.level, record.reducer, record.scale, record.tile_scales)
        ).shape[0]
        - 1
    )
    return picture[band:]


def _thumbnail(picture: np.ndarray, height: int) -> np.ndarray:
    h, w = picture.shape[:2]
    width = max(1, round(w * height / h))
    return cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_NEAREST)


def run_ranges(
    source: FeatureSource,
    inputs: Sequence[tuple[str, Path]],
    settings: DrawSettings,
    batch_size: int,
    timer: Timer,
    max_pixels: int | None = None,
    boxes: Sequence[Sequence[float]] | None = None,
) -> dict[str, tuple[float, float] | None]:
    """The statistics pass of ``output.scale=per_level/per_run``: every input's maps reduced (from the cache, or
    the model when they are not cached) and their ranges collected before anything is drawn. Inputs that fail are
    skipped here; the drawing pass reports them."""
    started = time.perf_counter()
    book = RangeBook(settings.scale)
    for batch in prefetch(ImageBatches(list(inputs), batch_size, False, max_pixels, boxes)):
        try:
            items = source.features(batch)
        except FeatvisError:
            raise
        except Exception:  # noqa: BLE001 - listed as a failure by the drawing pass
            continue
        for item in items:
            add_run_stats(book, reduce_levels(item.features, item.geometry, settings))
    timer.add("scale_stats", started)
    return book.ranges()


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
    metrics = MetricsPlan.from_config(cfg)
    annotated = run_annotations(cfg, inputs)
    if annotated is not None:
        inputs = annotated.inputs
    draw_gt = annotated is not None and cfg.output.draw_gt is not False
    pictures = {image_id: picture_ids(image_id, cfg.model.bboxes) for image_id, _ in inputs}  # pose: one per box
    picture_order = [p for ids in pictures.values() for p in ids]
    folder = RunFolder.open(out_dir, resolved, cfg.output.overwrite, picture_order)
    timer = Timer()
    cache = activation_cache(cfg)
    sheets_wanted = not strict and cfg.experiment.contact_sheet and settings.write_pictures  # maps: the page instead
    thumb_height = cfg.experiment.contact_tile if sheets_wanted else 0
    analysis = RunAnalysis(cfg.analysis, out_dir, picture_order)
    # an input is finished when every picture of it is journaled with its analysis partial; the partials are merged
    # here, in input order, as a fresh run would
    journaled = {p: folder.finished(p) for p in picture_order}
    done_inputs = {
        image_id
        for image_id, ids in pictures.items()
        if all(journaled[p] and analysis.has_partial(p, journaled[p]) for p in ids)
    }
    finished = {}
    for image_id, _ in inputs:
        for p in pictures[image_id] if image_id in done_inputs else ():
            finished[p] = journaled[p]
            analysis.restore(p, journaled[p])
    batches = ImageBatches(
        [i for i in inputs if i[0] not in done_inputs],
        cfg.images.batch_size,
        strict,
        cfg.images.max_pixels,
        cfg.model.bboxes,
    )
    decoded = list(batches) if strict else batches  # a bad single image fails before the model is planned
    source = feature_source(cfg, settings, cache, timer)
    ranges = (
        run_ranges(source, inputs, settings, cfg.images.batch_size, timer, cfg.images.max_pixels, cfg.model.bboxes)
        if settings.scale.needs_stats
        else None
    )
    begun = time.perf_counter()
    with drawing_pool() as pool:
        run = _ImageRun(
            source, settings, folder, thumb_height, pool, run_ranges=ranges, strict=strict, analysis=analysis
        )
        run.metrics, run.truth, run.draw_gt = metrics, annotated.truth if annotated else {}, draw_gt
        if metrics is not None:
            from featvis_run.report.summary import make_console

            make_console().print(metrics.cost_line(), highlight=False, markup=False)
        try:
            with progress_bar(enabled=not strict) as progress:
                total = sum(len(ids) for ids in pictures.values())
                task = progress.add_task("images", total=total, rate="") if progress else None
                rate = ImageRate.start(timer, restored=len(finished))
                for image_id, entry in finished.items():
                    run.restore(image_id, entry)
                for batch in prefetch(decoded):
                    run.process(batch)
                    if progress:
                        done = len(run.images) + len(run.pending) + len(run.failures) + len(batches.failures)
                        progress.update(task, completed=done, rate=rate.text(done))
                run.finish()
            timer.add("image_loop", begun)  # wall clock of decoding, forward and drawing every image
        except KeyboardInterrupt:
            run.salvage()  # the images already drawing are finished and journaled; no half-drawn one is
            raise RunInterrupted(len(run.images), len(inputs), resume_hint(cfg, out_dir)) from None
    sheets = run.contact_sheets() if run.thumbs else []
    analysis_entry = None
    if analysis.enabled:
        started = time.perf_counter()
        analysis_entry = analysis.finish(cfg.images.max_pixels)
        timer.add("analysis_write", started)
    notes = folder.notes + source.model_notes() + list(annotated.notes if annotated else ()) + analysis.notes
    if metrics is not None:
        scored, spent = sum(1 for im in run.images if im.metrics), timer.seconds.get("metrics", 0.0)
        notes.append(metrics.cost_line() + (f"; {spent / scored:.2f} s per image here" if scored else ""))
    notes += non_finite_notes(run.outputs) + sorted({o.note for o in run.outputs if o.note}) + run.notes
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
        extra={
            **cache_summary(cache, [source]),
            "resumed_images": len(finished),
            "scale": _scale_entry(settings, ranges),
            **({"contact_sheets": sheets} if sheets else {}),
            **({"analysis": analysis_entry} if analysis_entry else {}),
            **_metrics_entry(run.images, metrics),
        },
    )
    result.save()
    return result


def _metrics_entry(images: Sequence[ImageRecord], plan: MetricsPlan | None) -> dict[str, Any]:
    """The manifest's run-wide ``metrics`` block (means over the images scored), when metrics were asked for."""
    if plan is None:
        return {}
    layer = next((im.metrics["layer"] for im in images if im.metrics), None)
    means = metric_means(images, layer) or {"layer": None, "images": 0, "steps": plan.steps}
    return {
        "metrics": {
            **means,
            "reducer": plan.reducer,
            "target": plan.target.text,
            "passes_per_image": plan.passes_per_image,
        }
    }


def _scale_entry(settings: DrawSettings, ranges: dict[str, tuple[float, float] | None] | None) -> dict[str, Any]:
    """The manifest's ``scale`` block: the mode, its options and the run-wide ranges (per_level, per_run)."""
    spec = settings.scale
    entry: dict[str, Any] = {"mode": spec.mode, "clip_percentile": spec.clip_percentile}
    if spec.fixed is not None:
        entry["range"] = list(spec.fixed)
    if ranges is not None:
        entry["ranges"] = {group: list(r) if r else None for group, r in ranges.items()}
    return entry
