"""``FeatvisHook``: feature maps of fixed images while a model trains, registered in mmengine's ``HOOKS``.

Add two lines to an mmdet (or mmseg) training config::

    custom_imports = dict(imports=['featvis_run.hooks'], allow_failed_imports=False)
    custom_hooks = [dict(type='FeatvisHook', interval=500, images=['data/val/a.jpg'], recorder='fpn')]

Every ``interval`` iterations (or epochs, ``by_epoch=True``) the model runs in eval mode without gradients on the
images (one forward pass per call), then every module's train/eval flag is restored. Each call writes
``<work_dir>/featvis/<iter_N|epoch_N>/<image>/<layer>/<level>.<fmt>`` with a manifest (a call drawn again after a
resume replaces its folder) and sends the pictures to the runner's visualizer backends (TensorBoard, W&B, local).
At the end of training ``<work_dir>/featvis/evolution/`` gets per level frames, an animated GIF, a strip and a change
plot on one colour range, as ``experiment=checkpoints`` draws them. An error in the hook is logged once, the hook
turns itself off, and training goes on.

Importing this module imports mmengine only; everything else is imported when training starts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from featvis_run.errors import error_line

__all__ = ["FeatvisHook"]


def _plain(value: Any) -> Any:
    """``value`` with every mapping a plain dict and every tuple a list (mmengine configs give ConfigDicts)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@HOOKS.register_module()
class FeatvisHook(Hook):
    """Draw feature maps of fixed images every ``interval`` iterations or epochs of training.

    Args:
        interval: draw every this many iterations (or epochs with ``by_epoch``).
        by_epoch: count epochs instead of iterations.
        images: image files, a folder or a glob (a list of these); None: the demo scene shipped with featvis-run.
        recorder: a ``recorder`` config group option (``fpn``, ``backbone``, ...) or a dict of recorders/mappings.
        reducer: ``squeeze_mean``, ``pixel_wise_max``, ``select_max`` or ``none`` (top-k grid of ``topk``).
        topk: channels drawn with ``reducer='none'``.
        use_norm: standardize each channel before reducing.
        output: an ``output`` config group option (``overlay``, ``heatmap``) or a dict of its fields.
        layout: a ``layout`` config group option (``auto``, ``grid_2x4``, ...) or a dict of its fields.
        output_options: fields of ``output`` to change (e.g. ``dict(alpha=0.6, colormap='turbo', format='jpg')``).
        layout_options: fields of ``layout`` to change.
        out_dir: where calls go (default ``<work_dir>/featvis``).
        to_backends: send the pictures to the runner's visualizer backends.
        summary: at the end of training, draw every call's maps as one sequence per level (GIF, strip, plot).
        frame_ms: how long each GIF frame shows.
        repo: the model's library (``mmdet``, ``mmseg`` or ``mmpose``).
    """

    priority = "LOW"

    def __init__(
        self,
        interval: int = 50,
        by_epoch: bool = False,
        images: str | list[str] | None = None,
        recorder: str | dict[str, Any] = "fpn",
        reducer: str = "squeeze_mean",
        topk: int = 20,
        use_norm: bool = False,
        output: str | dict[str, Any] = "overlay",
        layout: str | dict[str, Any] = "auto",
        output_options: dict[str, Any] | None = None,
        layout_options: dict[str, Any] | None = None,
        out_dir: str | None = None,
        to_backends: bool = True,
        summary: bool = True,
        frame_ms: int = 700,
        repo: str = "mmdet",
    ):
        self.interval, self.by_epoch, self.images_spec, self.out_dir = interval, by_epoch, _plain(images), out_dir
        self.to_backends, self.summary, self.repo = to_backends, summary, repo
        self.draw_options = _plain(  # a config file gives mmengine ConfigDicts, which OmegaConf refuses
            dict(
                recorder=recorder,
                reducer=reducer,
                topk=topk,
                use_norm=use_norm,
                output=output,
                layout=layout,
                output_options=output_options,
                layout_options=layout_options,
                frame_ms=frame_ms,
            )
        )
        self.options = {"interval": interval, "by_epoch": by_epoch, "images": images, **self.draw_options}
        self.failed: str | None = None
        self.drawn: set[str] = set()
        self._ready = False

    # ---- mmengine's hook points ----
    def before_train(self, runner: Any) -> None:
        """Check the options, read the images and prepare the model's test pipeline."""
        self._guard(runner, "setting up", lambda: self._setup(runner))

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        """Draw every ``interval`` iterations (unless ``by_epoch``)."""
        if not self.by_epoch and self.every_n_train_iters(runner, self.interval):
            self._guard(runner, "drawing", lambda: self._draw(runner, f"iter_{runner.iter + 1}", runner.iter + 1))

    def after_train_epoch(self, runner: Any) -> None:
        """Draw every ``interval`` epochs (with ``by_epoch``)."""
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self._guard(runner, "drawing", lambda: self._draw(runner, f"epoch_{runner.epoch + 1}", runner.epoch + 1))

    def after_train(self, runner: Any) -> None:
        """Draw the final weights if the last step was not drawn, then the summary over every call."""
        step = runner.epoch if self.by_epoch else runner.iter
        tag = f"{'epoch' if self.by_epoch else 'iter'}_{step}"
        if step > 0 and tag not in self.drawn:  # the final weights, when the interval did not end on them
            self._guard(runner, "drawing", lambda: self._draw(runner, tag, step))
        if self.summary:
            self._guard(runner, "writing the summary", lambda: self._write_summary(runner))

    # ---- the work ----
    def _guard(self, runner: Any, what: str, job: Any) -> None:
        """Run ``job`` unless an earlier error turned the hook off; an error is logged once and turns it off."""
        if self.failed is not None:
            return
        try:
            job()
        except Exception as err:
            self.failed = error_line(err)
            runner.logger.error(
                f"FeatvisHook failed while {what} ({self.failed}); it draws nothing more in this run, training goes on"
            )

    def _root(self, runner: Any) -> Path:
        return Path(self.out_dir) if self.out_dir else Path(runner.work_dir) / "featvis"

    def _setup(self, runner: Any) -> None:
        from featvis_run.errors import ConfigError
        from featvis_run.experiments.inputs import unique_ids
        from featvis_run.experiments.training import LiveModel, hook_settings
        from featvis_run.store.images import InputImage, collect_images, read_image

        if self.interval <= 0:
            raise ConfigError(f"FeatvisHook interval={self.interval} must be a positive number of steps")
        self.cfg, self.settings = hook_settings(**self.draw_options)
        paths = collect_images(self.images_spec)
        self.images = []
        for image_id, path in zip(unique_ids(paths), paths, strict=True):
            array, sha = read_image(path, "images")
            self.images.append(InputImage(image_id, path, array, sha))
        self.live = LiveModel(runner.model, runner.cfg, self.repo)
        self._ready = True
        runner.logger.info(
            f"FeatvisHook: {len(self.images)} image(s) every {self.interval} {'epochs' if self.by_epoch else 'iters'} "
            f"-> {self._root(runner)}"
        )

    def _draw(self, runner: Any, tag: str, step: int) -> None:
        import cv2
        from mmengine.dist import is_main_process

        from featvis_run.experiments.training import write_call

        if not self._ready or not is_main_process():  # one process draws (the model's eval pass needs no peers)
            return
        started = time.perf_counter()
        items = self.live.record([im.array for im in self.images], self.cfg)
        send = None
        if self.to_backends:
            visualizer = runner.visualizer

            def send(name: str, picture: Any) -> None:
                visualizer.add_image(name, cv2.cvtColor(picture, cv2.COLOR_BGR2RGB), step=step)

        result = write_call(self._root(runner), tag, self.images, items, self.settings, self.options, send)
        self.drawn.add(tag)
        seconds = time.perf_counter() - started
        runner.logger.info(f"FeatvisHook: {tag}: {len(result.outputs)} maps in {seconds:.1f} s -> {result.out_dir}")

    def _write_summary(self, runner: Any) -> None:
        from mmengine.dist import is_main_process

        from featvis_run.experiments.training import write_summary

        if not self._ready or not is_main_process():
            return
        result = write_summary(
            self._root(runner), self.images, self.settings, self.options, self.cfg.experiment.frame_ms
        )
        if result is not None:
            runner.logger.info(f"FeatvisHook: GIFs, strips and change plots per level -> {result.out_dir}")
