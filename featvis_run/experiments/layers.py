"""``mode=layers``: every module of the model with the shapes it outputs on the first input image."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from featvis_run.errors import ConfigError, InputError
from featvis_run.experiments.common import activation_cache
from featvis_run.experiments.inputs import ImageBatches, check_inputs, image_paths, named_inputs, selected_inputs
from featvis_run.models.registry import run_batch
from featvis_run.models.source import FeatureSource
from featvis_run.recording.layers import LayerInfo, list_layers
from featvis_run.schema import Config
from featvis_run.store.outputs import ensure_writable_dir, write_json
from featvis_run.timing import Timer

__all__ = ["list_model_layers"]


def list_model_layers(cfg: Config, out_dir: Path) -> list[LayerInfo]:
    """List the modules of ``cfg.model`` run on the first readable input; also written to ``layers.json``."""
    check_inputs(cfg)
    if cfg.experiment.name == "diff":
        raise ConfigError("mode=layers lists one model's modules: use experiment=single model=... mode=layers")
    single = cfg.experiment.name == "single"
    spec = cfg.images.paths if cfg.images.paths is not None else cfg.image
    inputs = named_inputs(image_paths(cfg)) if single else selected_inputs(spec, cfg.images.limit, cfg.images.shard)
    first = next(iter(ImageBatches(inputs, 1, strict=single)), None)
    if not first:
        raise InputError(f"no readable image among {len(inputs)} inputs to list the layers with")
    source = FeatureSource(cfg.model, cfg.recorder, activation_cache(cfg), Timer())
    built = source.model()
    layers = list_layers(built.model, lambda: run_batch(built, [first[0].array]))
    write_json(ensure_writable_dir(out_dir) / "layers.json", [asdict(layer) for layer in layers])
    return layers
