"""``experiment=single``: one image (``image``, or the demo scene) through one model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featvis_run.experiments.batch_run import run_images
from featvis_run.experiments.inputs import check_inputs, image_paths, named_inputs
from featvis_run.schema import Config
from featvis_run.store.manifest import RunResult

__all__ = ["run_single"]


def run_single(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> RunResult:
    """One image through one model: one file per recorded layer and level, and the manifest."""
    check_inputs(cfg)
    return run_images(cfg, out_dir, resolved, named_inputs(image_paths(cfg)), "single")
