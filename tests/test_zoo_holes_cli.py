"""The holes of the detection and segmentation zoo, from the command line on real packaged configs (random init, a
120 x 160 image, small scales): each model below failed before, and is now drawn or refused in one line."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from .test_cli import manifest, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture()
def small_image(tmp_path):
    """120 x 160: a test_scale of [128, 128] resizes it by 0.8 to 96 x 128."""
    rng = np.random.default_rng(1)
    path = tmp_path / "small.png"
    cv2.imwrite(str(path), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return path


def _levels(out):
    return {(o["layer"], o["level"]): o["shape"] for o in manifest(out)["outputs"]}


def test_layers_are_listed_for_a_model_without_a_neck(tmp_path, small_image):
    out = tmp_path / "layers"
    config = "mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py"
    proc = run_cli(
        "model=mmdet",
        f"model.mmdet_config={config}",
        "model.test_scale=[128,128]",
        "mode=layers",
        f"image={small_image}",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    layers = {entry["name"]: entry for entry in json.loads((out / "layers.json").read_text())}
    assert "neck" not in layers and layers["panoptic_head.pixel_decoder"]["calls"] == 1
    # the LSJ pipeline pads 96 x 128 to a multiple of 32: ResNet-50's layer1 at stride 4
    assert layers["backbone.layer1"]["shapes"] == [[1, 256, 24, 32]]


def test_the_strong_baseline_with_mmcv_sync_bn_is_drawn_with_plain_bn(tmp_path, small_image):
    out = tmp_path / "sb"
    config = "strong_baselines/mask-rcnn_r50_fpn_rpn-2conv_4conv1fc_syncbn-all_lsj-50e_coco.py"
    proc = run_cli(
        "model=mmdet",
        f"model.mmdet_config={config}",
        "model.test_scale=[128,128]",
        f"image={small_image}",
        "cache=off",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    # 96 x 128 (its LSJ pipeline pads to a multiple of 32, which it already is): FPN strides 4 .. 64
    assert {level: shape[1:] for (_, level), shape in _levels(out).items()} == {
        "p2": [24, 32],
        "p3": [12, 16],
        "p4": [6, 8],
        "p5": [3, 4],
        "p6": [2, 2],
    }
    assert any("MMSyncBN" in n and "built as plain BN" in n for n in manifest(out)["notes"])


def test_mae_is_drawn_at_the_size_its_position_table_fits_whatever_the_test_scale(tmp_path, small_image):
    out = tmp_path / "mae"
    # a 4-layer MAE whose position table fits 64 x 64 inputs (the packaged one is 12 layers at 512 x 512)
    options = '["model.backbone.img_size=(64,64)","model.backbone.num_layers=4","model.backbone.out_indices=[0,1,2,3]"]'
    proc = run_cli(
        "model=mmseg",
        "model.config=mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py",
        "model.test_scale=[128,128]",
        f"model.cfg_options={options}",
        f"image={small_image}",
        "cache=off",
        "output.caption=false",  # the picture alone, at the image's size (no caption band above it)
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    # 120 x 160 fitted into 64 x 64 (x 0.4: 48 x 64), padded to 64 x 64; 16-pixel patches: a 4 x 4 grid at stride 16
    assert m["images"][0]["input_hw"] == [64, 64]
    assert _levels(out) == {("backbone", level): [768, 4, 4] for level in ("c4", "c4_2", "c4_3", "c4_4")}
    assert any("fixed to 64x64 inputs" in n and "model.test_scale=[128, 128] was not used" in n for n in m["notes"])
    picture = cv2.imread(str(out / "small/backbone/c4.png"))
    assert picture.shape == (120, 160, 3)


@pytest.mark.parametrize(
    ("config", "inputs", "logits", "note"),
    [
        # a cascade (FPNHead, PointHead): the FPN's maps fed to the first head, the refined logits at the input size
        (
            "point_rend/pointrend_r50_4xb2-80k_cityscapes-512x1024.py",
            {"c2": [256, 24, 32], "c3": [256, 12, 16], "c4": [256, 6, 8], "c5": [256, 3, 4]},
            [19, 96, 128],
            "cascade of 2 heads (FPNHead, PointHead)",
        ),
        # per-query classes and masks: the per-pixel class scores, at the input size
        (
            "mask2former/mask2former_r50_8xb2-90k_cityscapes-512x1024.py",
            {"c2": [256, 24, 32], "c3": [512, 12, 16], "c4": [1024, 6, 8], "c5": [2048, 3, 4]},
            [19, 96, 128],
            "Mask2FormerHead outputs per-query classes and masks",
        ),
        # ViT-B (map, class token) pairs, all four at stride 16; DPT's logits at stride 2
        (
            "dpt/dpt_vit-b16_8xb2-160k_ade20k-512x512.py",
            {level: [768, 6, 8] for level in ("c4", "c4_2", "c4_3", "c4_4")},
            [150, 48, 64],
            None,
        ),
    ],
    ids=["pointrend", "mask2former", "dpt"],
)
def test_the_decode_head_preset_draws_cascades_query_heads_and_token_pairs(
    tmp_path, small_image, config, inputs, logits, note
):
    out = tmp_path / "head"
    proc = run_cli(
        "model=mmseg",
        f"model.config={config}",
        "model.test_scale=[128,128]",
        "recorder=decode_head",
        f"image={small_image}",
        "cache=off",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    expected = {("head_inputs", level): shape for level, shape in inputs.items()}
    assert _levels(out) == {**expected, ("logits", "out"): logits}
    if note:
        assert any(note in n for n in manifest(out)["notes"])


def test_an_op_without_a_cpu_kernel_is_one_line_and_the_backbone_is_drawn(tmp_path, small_image):
    config = "carafe/faster-rcnn_r50_fpn-carafe_1x_coco.py"
    common = (
        "model=mmdet",
        f"model.mmdet_config={config}",
        "model.test_scale=[128,128]",
        f"image={small_image}",
        "cache=off",
    )
    proc = run_cli(*common, f"output.dir={tmp_path / 'fpn'}")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "mmcv's 'carafe_forward' op, which has no cpu kernel here (it needs cuda)" in proc.stderr
    assert proc.stderr.rstrip().endswith("recorder=backbone") and "Traceback" not in proc.stderr
    out = tmp_path / "backbone"
    proc = run_cli(*common, "recorder=backbone", f"output.dir={out}")
    assert proc.returncode == 0, proc.stderr
    # 96 x 128 padded to a multiple of 64 (the CARAFE configs' pad_size_divisor): 128 x 128, strides 4 .. 32
    assert manifest(out)["images"][0]["input_hw"] == [128, 128]
    assert {level: shape[1:] for (_, level), shape in _levels(out).items()} == {
        "c2": [32, 32],
        "c3": [16, 16],
        "c4": [8, 8],
        "c5": [4, 4],
    }
    (note,) = [n for n in manifest(out)["notes"] if "failed after its inputs were prepared" in n]
    assert "RuntimeError: carafe_forward_impl: implementation for device cpu not found.)" in note
