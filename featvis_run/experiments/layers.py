"""``mode=layers``: every module of the model with the shapes it outputs on the first input image, and the grid
its token outputs would be drawn on."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from featvis_run.errors import ConfigError, FeatvisError, InputError, ModelError, error_line
from featvis_run.experiments.inputs import ImageBatches, check_inputs, image_paths, named_inputs, selected_inputs
from featvis_run.maps.tokens import GridError, infer_token_grid
from featvis_run.models.base import PredictionFailed
from featvis_run.models.registry import build_model, plan_model, run_batch
from featvis_run.recording.layers import LayerInfo, list_layers
from featvis_run.schema import Config
from featvis_run.store.outputs import ensure_writable_dir, write_json
from featvis_run.store.run_folder import claim_folder

__all__ = ["list_model_layers", "token_grids"]


def token_grids(layer: LayerInfo, input_hw: tuple[int, int]) -> tuple[str, ...]:
    """For each (1, L, C) token output of ``layer``, the grid it is drawn on (or that none fits)."""
    grids = []
    for shape in layer.shapes:
        if len(shape) == 3 and shape[0] == 1:
            try:
                h, w = infer_token_grid(shape[1], input_hw)
                grids.append(f"{'x'.join(map(str, shape))} tokens: {h}x{w} grid")
            except GridError:
                grids.append(f"{'x'.join(map(str, shape))} tokens: no grid fits (set grid: [H, W] in a mapping)")
    return tuple(grids)


def list_model_layers(cfg: Config, out_dir: Path) -> tuple[list[LayerInfo], list[str]]:
    """List the modules of ``cfg.model`` run on the first readable input; also written to ``layers.json``.

    No recorder is involved (listing layers is how a recorder is chosen): a model without the default preset's
    ``neck`` is listed all the same.

    Returns:
        The layers, and notes (what the adapter changed in the config, e.g. a fixed input size; the model failed
        part-way: later modules show no output).
    """
    check_inputs(cfg)
    if cfg.experiment.name == "diff":
        raise ConfigError("mode=layers lists one model's modules: use experiment=single model=... mode=layers")
    claim_folder(ensure_writable_dir(out_dir), cfg.output.overwrite, hydra_started=True)
    single = cfg.experiment.name == "single"
    spec = cfg.images.paths if cfg.images.paths is not None else cfg.image
    inputs = named_inputs(image_paths(cfg)) if single else selected_inputs(spec, cfg.images.limit, cfg.images.shard)
    first = next(iter(ImageBatches(inputs, 1, strict=single, max_pixels=cfg.images.max_pixels)), None)
    if not first:
        raise InputError(f"no readable image among {len(inputs)} inputs to list the layers with")
    image = first[0]
    plan = plan_model(cfg.model)
    built, _ = build_model(plan)
    listing = list_layers(built.model, lambda: run_batch(built, [image.array]))
    notes = list(plan.notes)
    if isinstance(listing.error, FeatvisError):
        raise listing.error
    if isinstance(listing.error, PredictionFailed):
        input_hw = listing.error.geometries[0].input_hw
        notes.append(f"the model failed part-way ({listing.error}); modules after that point show no output")
    elif listing.error is not None:
        err = listing.error
        raise ModelError(f"{cfg.model.name} failed on {image.path}: {error_line(err)}") from err
    else:
        input_hw = listing.result[0].geometry.input_hw
    layers = [replace(layer, grids=token_grids(layer, input_hw)) for layer in listing.layers]
    write_json(out_dir / "layers.json", [asdict(layer) for layer in layers])
    return layers, notes
