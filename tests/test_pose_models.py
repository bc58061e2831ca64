"""Pose models end to end on a tiny top-down heatmap model (tests/pose_configs/tiny_pose.py, built once per session):
mmpose's keypoints lie on the recorded heatmaps' maxima mapped back through featvis-run's geometry, and every
experiment (multi_image with boxes, cache, colour scales, arrays, diff, checkpoints, the training hook) draws pose
models; the named options build and draw their heatmaps; a sweep runs from the command line."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featvis_run.cli_args import prepare_argv
from featvis_run.experiments.run import run_experiment
from featvis_run.models.registry import build_model, plan_model
from featvis_run.models.source import record_batch
from featvis_run.predictions import Keypoints
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import MappingSpec, ModelConfig, RecorderSpec, register_configs

from .conftest import CONF_DIR, console_script

register_configs()  # the structured config schema the YAML files extend

pytestmark = pytest.mark.slow

TINY = Path(__file__).parent / "pose_configs" / "tiny_pose.py"
BOX = (100.0, 50.0, 300.0, 400.0)


@pytest.fixture(scope="session")
def tiny_pose():
    """The tiny pose model, built once (the process's model pool hands the same one to in-process runs)."""
    built, _ = build_model(plan_model(ModelConfig(name="tiny_pose", config=str(TINY), repo="mmpose")))
    return built


def _photo(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    img = (rng.random((240, 320, 3)) * 200).astype(np.uint8)
    cv2.circle(img, (160, 100), 40, (0, 0, 255), -1)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    """A 240 x 320 picture."""
    return _photo(tmp_path_factory.mktemp("pose") / "person.png", 1)


def _run(*overrides: str, out: Path) -> dict:
    args = [f"model.config={TINY}", f"output.dir={out}", *overrides]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        dcfg = compose(config_name="config", overrides=prepare_argv(["model=mmpose", *args]))
    run_experiment(OmegaConf.to_object(dcfg), out, OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True))
    return json.loads((out / "manifest.json").read_text())


def test_predicted_keypoints_lie_on_the_heatmap_maxima_mapped_back_through_the_geometry(tiny_pose, photo):
    img = cv2.imread(str(photo))
    recorders = {"head": RecorderSpec(source="head.forward", type="method_outputs")}
    mappings = {"heatmaps": MappingSpec(recorder="head")}
    items = record_batch(tiny_pose, [img, img], recorders, mappings, [None, BOX])
    for item in items:
        heat, kps = item.features[LevelKey("head", "heatmaps")], item.predictions
        assert isinstance(kps, Keypoints) and heat.shape == (17, 32, 24) and kps.class_names[0] == "nose"
        to_original = np.linalg.inv(item.geometry.to_input())
        cell = 4 / item.geometry.to_input()[0, 0]  # one heatmap cell (stride 4) in original pixels
        for k in range(17):
            row, col = np.unravel_index(np.argmax(heat[k]), heat[k].shape)
            x, y, _ = to_original @ np.array([(col + 0.5) * 4, (row + 0.5) * 4, 1.0])
            assert abs(x - kps.points[k, 0]) <= cell and abs(y - kps.points[k, 1]) <= cell, k
    # the whole image is the default box [0, 0, 320, 240], centred at pixel index (160, 120) (mmpose's convention),
    # padded x1.25 to 400 x 300 and widened to 3:4 -> 400 x 533.3: k = 96 / 400 = 0.24 input pixels per pixel, so
    # the photo's centre (160, 120) (continuous: index 159.5, 119.5) lands at 0.24 * -0.5 + 48 + 0.5 = 48.38
    whole = items[0].geometry.to_input() @ np.array([160.0, 120.0, 1.0])
    assert whole[:2] == pytest.approx([48.38, 64.38], abs=1e-6)


def test_multi_image_with_boxes_cache_scales_and_arrays(tiny_pose, photo, tmp_path):
    overrides = (
        "experiment=multi_image",
        f"images=[{photo},{_photo(tmp_path / 'other.png', 2)}]",
        "model.bboxes=[[100,50,300,400],[0,0,320,240]]",
        "recorder=head",
        "output.scale=per_run",
        "output.save_arrays=both",
        "output.pred_score_thr=0",
        f"cache.dir={tmp_path / 'cache'}",
    )
    first = _run(*overrides, out=tmp_path / "a")
    ids = sorted(im["id"] for im in first["images"])
    assert ids == ["other_box0", "other_box1", "person_box0", "person_box1"]
    image = next(im for im in first["images"] if im["id"] == "person_box0")
    assert image["geometry"]["affine"] is not None and len(image["predictions"]["keypoints"]) == 17
    assert image["predictions"]["names"][5] == "left_shoulder" and [15, 13] in image["predictions"]["skeleton"]
    out = next(o for o in first["outputs"] if o["image"] == "person_box0")
    assert out["shape"] == [17, 32, 24] and first["scale"]["mode"] == "per_run"
    assert np.load(tmp_path / "a" / out["arrays"]["features"]["file"]).shape == (17, 32, 24)
    again = _run(*overrides, out=tmp_path / "b")  # the same boxes: every picture from the cache
    assert again["forward_passes"] == 0 and again["cache"]["hits"] == 8  # 4 in the per_run statistics pass, 4 drawn
    resumed = _run(*overrides, out=tmp_path / "a")  # the same folder: every picture from the journal
    assert resumed["resumed_images"] == 4 and len(resumed["images"]) == 4
    assert (
        sorted(again["images"], key=lambda im: im["id"])[0]["predictions"]
        == sorted(first["images"], key=lambda im: im["id"])[0]["predictions"]
    )


def test_two_pose_models_diff_level_by_level(tiny_pose, photo, tmp_path):
    out = tmp_path / "diff"
    args = [
        "experiment=diff",
        f"image={photo}",
        "model@model_a=mmpose",
        f"model_a.config={TINY}",
        "model@model_b=mmpose",
        f"model_b.config={TINY}",
        "model_b.seed=1",
        "cache=off",
        f"output.dir={out}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        dcfg = compose(config_name="config", overrides=prepare_argv(args))
    run_experiment(OmegaConf.to_object(dcfg), out, OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True))
    m = json.loads((out / "manifest.json").read_text())
    assert [c["level"] for c in m["comparisons"]] == ["c2", "c3", "c4", "c5"]
    assert all(c["mean_abs_diff"] > 0 for c in m["comparisons"])  # seeds 0 and 1 differ


def test_checkpoints_of_a_pose_model_draw_one_sequence_per_level(tiny_pose, photo, tmp_path):
    import torch

    paths = []
    for i in range(2):
        state = {k: v + 0.01 * i if v.is_floating_point() else v for k, v in tiny_pose.model.state_dict().items()}
        paths.append(tmp_path / f"epoch_{i + 1}.pth")
        torch.save({"state_dict": state}, paths[-1])
    m = _run(
        "experiment=checkpoints",
        f"checkpoints=[{paths[0]},{paths[1]}]",
        f"image={photo}",
        "cache=off",
        out=tmp_path / "ck",
    )
    assert [c["matched_keys"] > 0 for c in m["checkpoints"]] == [True, True]
    assert {o["level"] for o in m["outputs"]} == {"c2", "c3", "c4", "c5"}


def test_the_training_hook_draws_a_pose_model(tiny_pose, photo, tmp_path):
    from featvis_run.hooks import FeatvisHook

    runner = SimpleNamespace(
        model=tiny_pose.model,
        cfg=tiny_pose.plan.cfg,
        work_dir=str(tmp_path),
        logger=logging.getLogger("t"),
        iter=0,
        epoch=0,
    )
    hook = FeatvisHook(
        interval=1, images=[str(photo)], recorder="head", to_backends=False, summary=False, repo="mmpose"
    )
    hook.before_train(runner)
    hook.after_train_iter(runner, 0)
    assert hook.failed is None
    assert (tmp_path / "featvis" / "iter_1" / "person" / "head" / "heatmaps.png").is_file()


@pytest.mark.parametrize(("option", "hw"), [("simplebaseline_r50_coco", [64, 48]), ("hrnet_w32_coco", [64, 48])])
def test_the_named_options_draw_17_keypoint_heatmaps(option, hw, photo, tmp_path):
    out = tmp_path / option
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        dcfg = compose(
            config_name="config",
            overrides=prepare_argv(
                [f"model={option}", "recorder=head", f"image={photo}", "cache=off", f"output.dir={out}"]
            ),
        )
    run_experiment(OmegaConf.to_object(dcfg), out, OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True))
    m = json.loads((out / "manifest.json").read_text())
    assert m["outputs"][0]["shape"] == [17, *hw] and m["images"][0]["input_hw"] == [256, 192]
    assert any("RANDOM INIT" in n for n in m["notes"])


def test_a_sweep_from_the_command_line_and_heads_without_maps_and_bottom_up_models_refused_in_one_line(photo, tmp_path):
    sweep = subprocess.run(
        [
            console_script(),
            "-m",
            "model=mmpose",
            f"model.config={TINY}",
            "model.seed=0,1",
            f"image={photo}",
            "cache=off",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert sweep.returncode == 0, sweep.stderr
    assert len(list((tmp_path / "sweep").rglob("manifest.json"))) == 2
    rtmpose = "body_2d_keypoint/rtmpose/coco/rtmpose-t_8xb256-420e_coco-256x192.py"
    dekr = "body_2d_keypoint/dekr/coco/dekr_hrnet-w32_8xb10-140e_coco-512x512.py"
    for config, recorder, says in (
        (rtmpose, "head", "RTMCCHead outputs keypoint coordinates or x/y vectors, not maps"),
        (dekr, "backbone", "is a BottomupPoseEstimator, not a top-down pose model"),
    ):
        proc = subprocess.run(
            [
                console_script(),
                "model=mmpose",
                f"model.config={config}",
                f"recorder={recorder}",
                f"image={photo}",
                "cache=off",
                f"output.dir={tmp_path / 'refused'}",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=600,
        )
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
        assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
