"""``FeatvisHook``: options like the config groups, unwrapping, one folder per call replaced on resume, and a short
real training run (folders, train mode restored, no nesting, visualizer backends, errors not fatal)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from featvis_run.errors import ConfigError
from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import ImageFeatures
from featvis_run.recording.levels import LevelKey
from featvis_run.store.images import InputImage


def test_hook_options_compose_like_the_config_groups():
    from featvis_run.experiments.training import hook_settings

    cfg, settings = hook_settings(
        recorder="backbone", reducer="none", topk=4, output="heatmap", output_options={"colormap": "turbo"}
    )
    assert cfg.recorder.name == "backbone" and settings.reducer == "none" and settings.topk == 4
    assert not settings.render.overlaid and settings.render.colormap == "turbo"
    custom, _ = hook_settings(recorder={"recorders": {"r": {"type": "module_outputs", "source": "neck"}}})
    assert list(custom.recorder.parsed()[0]) == ["r"]
    with pytest.raises(ConfigError, match="reducer='sum'"):
        hook_settings(reducer="sum")
    with pytest.raises(ConfigError, match="output='fancy'"):
        hook_settings(output="fancy")
    with pytest.raises(ConfigError, match="FeatvisHook output"):
        hook_settings(output_options={"no_such_option": 1})


def test_wrappers_and_distillers_are_unwrapped():
    from torch import nn

    from featvis_run.experiments.training import unwrap_model

    detector = nn.Sequential(nn.Conv2d(3, 4, 3))

    class Distiller(nn.Module):
        def __init__(self):
            super().__init__()
            self.architecture = detector
            self.teacher = nn.Conv2d(3, 4, 3)

    assert unwrap_model(nn.DataParallel(Distiller())) is detector
    assert unwrap_model(detector) is detector


def _item(value: float) -> ImageFeatures:
    feat = np.full((2, 4, 6), value, np.float32)
    return ImageFeatures(Geometry.identity((4, 6)), None, {LevelKey("neck", "p3"): feat})


def test_a_call_drawn_again_replaces_its_folder_and_the_summary_orders_calls(tmp_path):
    from featvis_run.experiments.training import call_folders, hook_settings, write_call, write_summary

    _, settings = hook_settings(output="heatmap")
    image = InputImage("img", tmp_path / "img.png", np.zeros((4, 6, 3), np.uint8), "0")
    sent = []
    for tag, value in (("iter_10", 1.0), ("iter_2", 2.0), ("iter_10", 3.0)):
        write_call(tmp_path, tag, [image], [_item(value)], settings, {}, lambda n, p: sent.append(n))
        (tmp_path / tag / "stale.txt").write_text("from before a resume")
    write_call(tmp_path, "iter_10", [image], [_item(5.0)], settings, {})
    assert not (tmp_path / "iter_10" / "stale.txt").exists()  # replaced, never nested or suffixed
    assert sorted(p.name for p in (tmp_path / "iter_10").iterdir()) == [".featvis", "img", "manifest.json"]
    assert sent == ["featvis_img_neck_p3"] * 3
    assert [p.name for p in call_folders(tmp_path)] == ["iter_2", "iter_10"]  # natural order
    result = write_summary(tmp_path, [image], settings, {}, 500)
    (level,) = result.extra["levels"]
    assert level["scale"] == [2.0, 5.0] and [c["checkpoint"] for c in level["change"]] == ["iter_2", "iter_10"]
    with Image.open(tmp_path / "evolution" / level["gif"]) as gif:
        assert gif.n_frames == 2


class _TinyDetector(nn.Module):
    """A detector-shaped torch model small enough for a fast test: what mmdet's ``test_step`` path uses
    (``data_preprocessor``, ``_run_forward``) around a conv + BatchNorm + Dropout backbone and a ``neck``. It notes
    the modules' train flags and whether gradients were on during each forward pass."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, stride=8, padding=1), nn.BatchNorm2d(4), nn.Dropout(0.5))
        self.frozen = nn.BatchNorm2d(4)  # a layer the training config keeps in eval mode
        self.neck = nn.Conv2d(4, 2, 1)
        self.seen = []

    def data_preprocessor(self, batch, training):
        inputs = torch.stack([x.float() for x in batch["inputs"]])
        for sample in batch["data_samples"]:
            sample.set_metainfo(dict(batch_input_shape=tuple(inputs.shape[-2:])))
        return dict(inputs=inputs, data_samples=batch["data_samples"])

    def _run_forward(self, data, mode):
        self.seen.append(({n: m.training for n, m in self.named_modules()}, torch.is_grad_enabled()))
        self.neck(self.frozen(self.backbone(data["inputs"])))
        return data["data_samples"]


def test_the_hook_draws_in_eval_mode_without_gradients_and_restores_every_flag(tmp_path, scene_image):
    """A training model (one layer kept in eval mode) through the hook: the pass sees every module in eval mode
    with gradients off, BatchNorm's running statistics are untouched (drawing does not train), and afterwards each
    module is back in its own mode."""
    from mmengine.config import Config

    from featvis_run.hooks import FeatvisHook

    model = _TinyDetector()
    model.train()
    model.frozen.eval()
    before = {n: m.training for n, m in model.named_modules()}
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="Resize", scale=(64, 64), keep_ratio=True),
        dict(type="PackDetInputs", meta_keys=("img_id", "ori_shape", "img_shape", "scale_factor")),
    ]
    cfg = Config(dict(test_dataloader=dict(dataset=dict(pipeline=pipeline, metainfo=dict(classes=("a",))))))
    runner = SimpleNamespace(
        model=model, cfg=cfg, work_dir=str(tmp_path), logger=logging.getLogger("featvis-test"), iter=1, epoch=0
    )
    hook = FeatvisHook(interval=2, images=[str(scene_image)], to_backends=False, summary=False)
    hook.before_train(runner)
    hook.after_train_iter(runner, 1)  # iteration 2 ends: a call
    assert hook.failed is None and (tmp_path / "featvis" / "iter_2" / "scene" / "neck" / "p3.png").is_file()
    ((modes, grad),) = model.seen
    assert not any(modes.values()) and not grad
    assert {n: m.training for n, m in model.named_modules()} == before
    assert all(torch.equal(model.state_dict()[k], v) for k, v in stats.items())


# ---- a real training run ----


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from featvis_run.demo.training import write_training_scenes

    return write_training_scenes(tmp_path_factory.mktemp("scenes"), 8, size=128)


@pytest.fixture()
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # much faster than 2 on a busy machine
    yield
    torch.set_num_threads(threads)


def _train(
    scenes: Path, work_dir: Path, hook: dict, iters: int = 5, epochs: int | None = None, save_every: int | None = None
):
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    import featvis_run.hooks  # noqa: F401  (what custom_imports does)
    from featvis_run.demo.training import demo_training_config

    cfg = demo_training_config(scenes, work_dir, iters, hook, batch_size=2, log_interval=1)
    if save_every is None:
        cfg.default_hooks.checkpoint = None
    else:
        cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=save_every, by_epoch=False)
    if epochs is not None:  # 8 scenes in batches of 2: 4 iterations per epoch
        cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=epochs)
        cfg.train_dataloader.sampler = dict(type="DefaultSampler", shuffle=True)
    runner = Runner.from_cfg(cfg)

    class Probe(Hook):
        """Puts one layer in eval mode before each iteration; notes the modes after every other hook ran."""

        def __init__(self):
            self.seen = []

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            runner.model.backbone.layer1.eval()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            model = runner.model
            self.seen.append((runner.iter + 1, model.training, model.neck.training, model.backbone.layer1.training))

    probe = Probe()
    runner.register_hook(probe, priority="LOWEST")
    runner.train()
    return runner, probe


@pytest.mark.slow
def test_hook_in_a_short_training_run(scenes, scene_image, tmp_path, one_thread):
    # through the runner's config, options arrive as mmengine ConfigDicts
    hook = dict(
        type="FeatvisHook", interval=2, images=[str(scene_image)], reducer="select_max", output_options={"alpha": 0.7}
    )
    runner, probe = _train(scenes, tmp_path / "wd", hook)
    root = tmp_path / "wd" / "featvis"
    assert sorted(p.name for p in root.iterdir()) == ["evolution", "iter_2", "iter_4", "iter_5"]  # + the final step
    for call in ("iter_2", "iter_4", "iter_5"):
        files = sorted(str(p.relative_to(root / call)) for p in (root / call).rglob("*.png"))
        assert files == [f"scene/neck/p{k}.png" for k in range(3, 8)]  # one folder per call, nothing nested
        manifest = json.loads((root / call / "manifest.json").read_text())
        assert manifest["call"] == call and len(manifest["outputs"]) == 5
    # after every iteration, the hook's included: the model trains, the layer kept in eval mode stays so
    assert probe.seen == [(i, True, True, False) for i in range(1, 6)]
    summary = json.loads((root / "evolution" / "manifest.json").read_text())
    assert summary["calls"] == ["iter_2", "iter_4", "iter_5"]
    for level in summary["levels"]:
        with Image.open(root / "evolution" / level["gif"]) as gif:
            assert gif.n_frames == 3
        assert len({tuple(c) for c in [o["channels"] for o in summary["outputs"] if o["level"] == level["level"]]}) == 1
    images = sorted(p.name for p in (tmp_path / "wd").glob("*/vis_data/vis_image/*.png"))
    assert "featvis_scene_neck_p3_2.png" in images and "featvis_scene_neck_p7_5.png" in images  # LocalVisBackend
    assert len(images) == 15


@pytest.mark.slow
def test_a_hook_error_is_logged_once_and_training_goes_on(scenes, scene_image, tmp_path, one_thread):
    bad = {"recorders": {"x": {"type": "module_outputs", "source": "no_such_layer"}}}
    hook = dict(type="FeatvisHook", interval=1, images=[str(scene_image)], recorder=bad)
    runner, probe = _train(scenes, tmp_path / "wd", hook, iters=3)
    assert runner.iter == 3 and [s[0] for s in probe.seen] == [1, 2, 3]
    assert all(training for _, training, _, _ in probe.seen)  # the failed call restored train mode too
    (log,) = (tmp_path / "wd").glob("*/*.log")
    text = log.read_text()
    assert text.count("FeatvisHook failed") == 1 and "no_such_layer" in text
    assert not list((tmp_path / "wd" / "featvis").glob("iter_*/*/*/*.png"))


@pytest.mark.slow
def test_hook_by_epoch_draws_once_per_epoch(scenes, scene_image, tmp_path, one_thread):
    hook = dict(type="FeatvisHook", interval=1, by_epoch=True, images=[str(scene_image)], summary=False)
    runner, probe = _train(scenes, tmp_path / "wd", hook, epochs=2)
    root = tmp_path / "wd" / "featvis"
    assert runner.epoch == 2 and len(probe.seen) == 8
    assert sorted(p.name for p in root.iterdir()) == ["epoch_1", "epoch_2"]  # no summary, no extra final call


@pytest.mark.slow
def test_the_hooks_summary_matches_experiment_checkpoints_on_the_saved_checkpoints(
    scenes, scene_image, tmp_path, one_thread
):
    from .test_cli import run_cli

    hook = dict(type="FeatvisHook", interval=2, images=[str(scene_image)], reducer="select_max")
    _train(scenes, tmp_path / "wd", hook, iters=4, save_every=2)
    summary = json.loads((tmp_path / "wd" / "featvis" / "evolution" / "manifest.json").read_text())
    out = tmp_path / "ck"
    proc = run_cli(
        "experiment=checkpoints",
        f"checkpoints={tmp_path / 'wd'}/iter_*.pth",
        f"image={scene_image}",
        "reducer=select_max",
        "cache=off",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads((out / "manifest.json").read_text())
    assert [c["checkpoint"] for c in run["checkpoints"]] == summary["calls"] == ["iter_2", "iter_4"]
    for hooked, saved in zip(summary["levels"], run["levels"], strict=True):
        assert hooked["channels"] == saved["channels"]
        assert hooked["scale"] == pytest.approx(saved["scale"], rel=2e-3, abs=1e-3)  # the hook keeps float16 maps
        for a, b in zip(hooked["change"], saved["change"], strict=True):
            assert a["mean_abs_diff"] == pytest.approx(b["mean_abs_diff"], rel=5e-3, abs=1e-4)
            assert a["cka"] == pytest.approx(b["cka"], abs=2e-3)
