"""A short training run of the demo detector on generated scenes, with :class:`featvis_run.hooks.FeatvisHook`
added the way a user adds it to an mmdet config (``custom_imports`` and ``custom_hooks``).

Used by ``make train-hook-demo`` (``scripts/train_hook_demo.py``) and the hook's tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featvis_run.demo import DEMO_CONFIG
from featvis_run.demo.shapes import write_coco_dataset

__all__ = ["demo_training_config", "write_training_scenes"]


def write_training_scenes(data_dir: Path, count: int, size: int = 256, seed: int = 0) -> Path:
    """``count`` generated scenes of ``size`` x ``size`` px with COCO annotations in ``data_dir`` (returned)."""
    write_coco_dataset(data_dir, count, seed=seed, size=(size, size), min_size=12, max_size=int(size * 0.85))
    return data_dir


def demo_training_config(
    data_dir: Path,
    work_dir: Path,
    iters: int,
    hook: dict[str, Any] | None,
    batch_size: int = 4,
    lr: float = 2e-3,
    log_interval: int = 10,
    checkpoint_interval: int | None = None,
    seed: int = 0,
    load_from: str | None = None,
) -> Any:
    """The demo detector's mmengine config for ``iters`` iterations on the scenes in ``data_dir`` (no validation),
    with ``hook`` (a ``FeatvisHook`` dict) added through ``custom_imports`` and ``custom_hooks``.

    Checkpoints are saved every ``checkpoint_interval`` iterations (default: only at the end) into ``work_dir``.
    """
    from mmengine.config import Config

    cfg = Config.fromfile(str(DEMO_CONFIG))
    cfg.train_dataloader.dataset.data_root = str(data_dir)
    cfg.train_dataloader.batch_size = batch_size
    # no validation while training: the val loop would need a held-out set (the test pipeline is still what the
    # hook prepares its images with)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters)
    cfg.optim_wrapper.optimizer.lr = lr
    warmup = max(1, min(20, iters // 4))
    cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=warmup)]
    cfg.default_hooks.checkpoint = dict(
        type="CheckpointHook", interval=checkpoint_interval or iters, by_epoch=False, save_last=True
    )
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=log_interval)
    cfg.log_processor = dict(type="LogProcessor", window_size=log_interval, by_epoch=False)
    cfg.randomness = dict(seed=seed)
    cfg.work_dir = str(work_dir)
    # mmengine keeps one visualizer per name in a process: a name per run, so each writes to its own work_dir
    cfg.visualizer.name = f"featvis_demo:{work_dir}"
    cfg.load_from = load_from
    cfg.launcher = "none"
    if hook is not None:
        cfg.custom_imports = dict(imports=["featvis_run.hooks"], allow_failed_imports=False)
        cfg.custom_hooks = [hook]
    return cfg
