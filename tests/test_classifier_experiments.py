"""Everything else works for classifiers too: multi_image, diff of two classifiers, checkpoints, a sweep, the
FeatvisHook, the cache, colour scales and arrays (smoke tests on the tiny classifier), and an mmdet config whose
backbone comes from mmpretrain (ConvNeXt). All slow: they import mmpretrain and build models."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from .classifier_configs import TINY_RESNET_CLS
from .test_classifiers import run_here
from .test_cli import run_cli

pytestmark = pytest.mark.slow
LEVELS = [f"c{k}" for k in range(1, 6)]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cls") / "tiny_resnet_cls.py"
    path.write_text(TINY_RESNET_CLS)
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    import cv2

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(5)
    paths = []
    for i, (h, w) in enumerate([(96, 160), (120, 90)]):
        path = folder / f"p{i}.png"
        cv2.imwrite(str(path), (rng.random((h, w, 3)) * 255).astype(np.uint8))
        paths.append(path)
    return paths


def levels_of(out: Path, image: str) -> list[str]:
    return sorted(p.stem for p in (out / image / "backbone").glob("*.png"))


def test_multi_image_with_the_cache_colour_scales_and_arrays(classifier, photos, tmp_path):
    common = (
        "model=mmpretrain",
        f"model.config={classifier}",
        "experiment=multi_image",
        f"images.paths=[{photos[0]},{photos[1]}]",
        "cache=on",
        f"cache.dir={tmp_path / 'cache'}",
        "output.scale=per_level",
        "output.save_arrays=both",
        "output.pictures=both",  # the pictures too (multi_image stores maps by default)
    )
    first = run_here(tmp_path / "a", *common)
    run_here(tmp_path / "b", *common)
    assert [levels_of(tmp_path / "a", im.id) for im in first.images] == [LEVELS, LEVELS]
    m = json.loads((tmp_path / "b/manifest.json").read_text())
    assert m["cache"]["hits"] >= 2 and m["cache"]["misses"] == 0  # the second run read both images from the cache
    assert [im["predictions"] for im in m["images"]] == [im.predictions for im in first.images]
    # 120 x 90 (H x W): the short edge 90 -> 72 (x 0.8), so 96 x 72, cropped 64 x 64 at top 32 / 2, left 8 / 2
    assert m["images"][1]["geometry"]["offset_hw"] == [-16, -4]
    c3 = [o for o in m["outputs"] if o["level"] == "c3"]
    assert c3[0]["scale"] == c3[1]["scale"]  # per_level: one range over both images
    features = np.load(tmp_path / "b" / c3[0]["arrays"]["features"]["file"])
    assert features.shape == (16, 8, 8)  # ResNet-18 at 1/8 width: 16 channels at stride 8 on a 64 x 64 input


def test_diff_of_two_classifiers_and_checkpoints(classifier, photos, tmp_path):
    import torch

    from featvis_run.models.registry import build_model, plan_model
    from featvis_run.schema import ModelConfig

    run_here(
        tmp_path / "diff",
        "experiment=diff",
        "model@model_a=mmpretrain",
        f"model_a.config={classifier}",
        "model@model_b=mmpretrain",
        f"model_b.config={classifier}",
        "model_b.seed=1",
        f"image={photos[0]}",
    )
    m = json.loads((tmp_path / "diff/manifest.json").read_text())
    assert sorted({o["level"] for o in m["outputs"]}) == LEVELS and not m["failures"]
    paths = []
    for seed in (3, 4):
        built, _ = build_model(plan_model(ModelConfig(name="x", config=str(classifier), repo="mmpretrain", seed=seed)))
        paths.append(tmp_path / f"epoch_{seed}.pth")
        torch.save(
            {"state_dict": built.model.state_dict(), "meta": {"dataset_meta": {"classes": list("abcde")}}}, paths[-1]
        )
    result = run_here(
        tmp_path / "ckpt",
        "experiment=checkpoints",
        "model=mmpretrain",
        f"model.config={classifier}",
        f"checkpoints=[{paths[0]},{paths[1]}]",
        f"image={photos[0]}",
    )
    assert not result.failures and {o.level for o in result.outputs} >= set(LEVELS)


def test_a_sweep_over_reducers(classifier, photos, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "model=mmpretrain",
        f"model.config={classifier}",
        f"image={photos[0]}",
        "cache=off",
        "reducer=select_max,eigencam",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if (p / "manifest.json").is_file())
    # only the swept key names the job folders (model.config, a file, would nest them)
    assert [p.name for p in jobs] == ["0_reducer=select_max", "1_reducer=eigencam"] and all(
        levels_of(job, "p0") == LEVELS for job in jobs
    )


def test_featvis_hook_draws_a_classifier_in_training(classifier, photos, tmp_path):
    from mmengine.config import Config

    import featvis_run.hooks as hooks
    from featvis_run.models.registry import build_model, plan_model
    from featvis_run.schema import ModelConfig

    built, _ = build_model(plan_model(ModelConfig(name="x", config=str(classifier), repo="mmpretrain")))
    built.model.train()
    runner = SimpleNamespace(
        model=built.model,
        cfg=Config.fromfile(str(classifier)),
        work_dir=str(tmp_path),
        iter=0,
        epoch=0,
        logger=logging.getLogger("featvis-test"),
        visualizer=None,
    )
    hook = hooks.FeatvisHook(
        interval=1, images=[str(photos[0])], recorder="backbone", repo="mmpretrain", to_backends=False, summary=False
    )
    hook.before_train(runner)
    hook.after_train_iter(runner, 0)
    assert hook.failed is None
    assert levels_of(tmp_path / "featvis/iter_1", "p0") == LEVELS
    assert built.model.training  # the train/eval flags are restored


def test_an_mmdet_config_with_an_mmpretrain_convnext_backbone_builds_and_draws():
    from featvis_run.models.registry import build_model, plan_model
    from featvis_run.models.source import record_batch
    from featvis_run.schema import ModelConfig, RecorderSpec

    config = "convnext/mask-rcnn_convnext-t-p4-w7_fpn_amp-ms-crop-3x_coco.py"  # custom_imports mmpretrain.models
    plan = plan_model(ModelConfig(name="x", mmdet_config=config, test_scale=[128, 96]))
    assert plan.cfg.model.backbone.type == "mmpretrain.ConvNeXt"
    built, _ = build_model(plan)
    spec = {"backbone": RecorderSpec(source="backbone", level_prefix="c")}
    (item,) = record_batch(built, [np.zeros((96, 128, 3), np.uint8)], spec, {})
    assert {k.level: v.shape for k, v in item.features.items()} == {
        "c2": (96, 24, 32),
        "c3": (192, 12, 16),
        "c4": (384, 6, 8),
        "c5": (768, 3, 4),
    }
