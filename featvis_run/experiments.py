"""The experiments ``run`` dispatches to, by ``experiment.name``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from featvis_run.features import extract_levels
from featvis_run.results import ImageRecord, RunResult
from featvis_run.runner import DrawSettings, Timer, draw_levels, image_paths, load_inputs, model_record, unique_ids
from featvis_run.schema import Config, Mode

__all__ = ["EXPERIMENTS", "list_model_layers", "random_init_note", "run_single"]


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


def run_single(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> Any:
    """One image (or the demo scene) through one model: one file per recorded layer and level."""
    timer = Timer()
    # Validate everything cheap before torch and mmdet are even imported.
    settings = DrawSettings.from_config(cfg) if cfg.mode is Mode.draw else None
    recorders, mappings = cfg.recorder.parsed()
    paths = image_paths(cfg)
    images = load_inputs(paths)
    from featvis_run.mmdet_adapter import load_detector, run_batch
    from featvis_run.recorder import FeatureRecorder

    started = time.perf_counter()
    det = load_detector(cfg.model)
    timer.add("model_load", started)
    if cfg.mode is Mode.layers:
        return list_model_layers(det, images[0], out_dir)
    with FeatureRecorder(det.model, recorders) as recorder:
        started = time.perf_counter()
        results = run_batch(det, images)
        timer.add("forward", started)
    features = extract_levels(recorder.records, recorders, mappings, batch=len(images))
    started = time.perf_counter()
    outputs = []
    for i, (image_id, image, res) in enumerate(zip(unique_ids(paths), images, results, strict=True)):
        per_image = {key: batch[i] for key, batch in features.items()}
        outputs += draw_levels(image_id, image, per_image, res.geometry, res.detections, settings, out_dir)
    timer.add("render", started)
    notes = [n for n in [random_init_note(det)] if n]
    notes += sorted({o.note for o in outputs if o.note})
    result = RunResult(
        experiment="single",
        out_dir=out_dir,
        config=resolved,
        models=(model_record(det),),
        images=tuple(
            ImageRecord(str(p), r.geometry.ori_hw, r.geometry.input_hw, len(r.detections.boxes))
            for p, r in zip(paths, results, strict=True)
        ),
        outputs=tuple(outputs),
        notes=tuple(notes),
        timings=timer.seconds,
    )
    result.save()
    return result


EXPERIMENTS = {"single": run_single}
