"""Dispatch: the experiment ``experiment.name`` names, run into a writable folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from featvis_run.analysis.collector import check_analysis
from featvis_run.errors import ConfigError
from featvis_run.experiments.checkpoints import run_checkpoints
from featvis_run.experiments.diff import run_diff
from featvis_run.experiments.inputs import input_sources
from featvis_run.experiments.multi_image import run_multi_image
from featvis_run.experiments.single import run_single
from featvis_run.report.page import write_run_page
from featvis_run.schema import Config
from featvis_run.store.manifest import RunResult
from featvis_run.store.outputs import ensure_writable_dir

__all__ = ["EXPERIMENTS", "run_experiment"]

EXPERIMENTS: dict[str, Callable[[Config, Path, dict[str, Any]], RunResult]] = {
    "single": run_single,
    "multi_image": run_multi_image,
    "diff": run_diff,
    "checkpoints": run_checkpoints,
}


def run_experiment(cfg: Config, out_dir: Path, resolved: dict[str, Any]) -> RunResult:
    """Run the configured experiment into ``out_dir``.

    Args:
        cfg: the typed config.
        out_dir: the run folder (created if needed; must be writable).
        resolved: the resolved config as plain values, recorded in the manifest.

    Returns:
        The saved run's result (manifest and ``index.html`` written).
    """
    name = cfg.experiment.name
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment={name!r} is unknown; choose one of {', '.join(EXPERIMENTS)}")
    check_analysis(cfg.analysis, name)
    ensure_writable_dir(out_dir)
    result = EXPERIMENTS[name](cfg, out_dir, resolved)
    return write_run_page(result, input_sources(cfg), cfg.images.max_pixels)
