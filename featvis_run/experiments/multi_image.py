"""``experiment=multi_image``: a list, folder or glob of images through one model loaded once, in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featvis_run.experiments.batch_run import run_images
from featvis_run.experiments.inputs import check_inputs, selected_inputs
from featvis_run.schema import Config
from featvis_run.store.manifest import RunResult

__all__ = ["run_multi_image"]


def run_multi_image(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> RunResult:
    """Many images (``images``: list, folder, glob; or ``image``: one file) with contact sheets per level."""
    check_inputs(cfg)
    spec = cfg.images.paths if cfg.images.paths is not None else cfg.image  # image=x: a run over that one file
    if spec is None and cfg.images.dataset is not None:  # the dataset config's image folder
        from featvis_run.analysis.annotations import dataset_source

        spec = str(dataset_source(cfg.images.dataset)[1])
    inputs = selected_inputs(spec, cfg.images.limit, cfg.images.shard)
    return run_images(cfg, out_dir, resolved, inputs, "multi_image")
