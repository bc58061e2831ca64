"""mmsegmentation models through the adapter seam: stride-named maps under resize-only geometry, whole inference,
one pass per image size, the class map drawn with a legend, and diff/multi-image runs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from featvis_run.drawing.masks import class_colours, draw_segmentation
from featvis_run.maps.geometry import Geometry
from featvis_run.predictions import SegmentationMap

from .test_cli import run_cli

pytest.importorskip("mmseg", reason="mmsegmentation is not installed (make install installs it)")


def test_the_class_map_is_tinted_with_the_palette_and_has_a_legend():
    img = np.full((60, 80, 3), 200, np.uint8)
    labels = np.zeros((60, 80), np.int32)
    labels[:, 40:] = 1
    palette = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)  # RGB: red, blue
    out = draw_segmentation(img, SegmentationMap(labels, ("sky", "sea"), palette), alpha=0.5)
    # away from the legend (bottom-left) and the boundary: (1 - 0.5) * 200 + 0.5 * colour, in BGR
    assert out[5, 10].tolist() == [100, 100, 228] and out[5, 70].tolist() == [228, 100, 100]
    assert out[5, 40].tolist() == [255, 0, 0] or out[5, 39].tolist() == [0, 0, 255]  # the boundary in full colour
    assert (out[40:, :30] < 100).mean() > 0.5  # the legend's dark box holds two rows
    assert class_colours(3, palette)[2].tolist() != [0, 0, 0]  # a class beyond the palette gets its own colour


def test_geometry_of_a_resized_image_with_the_preprocessors_padding():
    from featvis_run.models.mmseg import _geometry

    meta = dict(ori_shape=(480, 640), img_shape=(256, 341), padding_size=[0, 11, 0, 0])
    assert _geometry(meta, (256, 352)) == Geometry((480, 640), (256, 341), (256, 352), (0, 0))
    assert _geometry(dict(ori_shape=(480, 640), img_shape=(256, 341)), (256, 341)).input_hw == (256, 341)


def test_padding_on_the_top_and_left_keeps_the_map_on_the_image():
    """A preprocessor that pads 8 rows above and 4 columns left of a 16 x 24 resized image (``padding_size`` is
    [left, right, top, bottom], as torch's F.pad) into a 32 x 32 input: a stride-4 map's image part is rows 2..5
    and columns 1..6, and only those cells are drawn over the image."""
    from featvis_run.maps.geometry import crop_valid
    from featvis_run.models.mmseg import _geometry

    meta = dict(ori_shape=(32, 48), img_shape=(16, 24), padding_size=[4, 4, 8, 8])
    geom = _geometry(meta, (32, 32))
    assert geom == Geometry((32, 48), (16, 24), (32, 32), (8, 4))  # (top, left)
    feat = np.zeros((1, 8, 8), np.float32)  # 32 / 4 cells a side; ones where the image is, zeros on the padding
    feat[:, 8 // 4 : (8 + 16) // 4, 4 // 4 : (4 + 24) // 4] = 1.0
    cropped = crop_valid(feat, geom)
    assert cropped.shape == (1, 4, 6) and cropped.min() == 1.0


@pytest.mark.slow
def test_segformer_draws_stride_named_backbone_maps_with_its_class_map(tmp_path):
    out = tmp_path / "seg"
    proc = run_cli(
        "model=segformer_b0", "model.test_scale=[512,256]", "cache=off", "output.caption=false", f"output.dir={out}"
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    # 480 x 640 resized to fit 512 x 256 -> 256 x 341, no padding: MiT stages at strides 4, 8, 16, 32
    got = {o["level"]: o["shape"][1:] for o in m["outputs"]}
    assert got == {"c2": [64, 86], "c3": [32, 43], "c4": [16, 22], "c5": [8, 11]}
    assert m["images"][0]["input_hw"] == [256, 341] and m["images"][0]["classes_predicted"] >= 1
    assert m["models"][0]["repo"] == "mmseg" and m["models"][0]["num_classes"] == 150
    with_mask = cv2.imread(str(out / "demo_scene/backbone/c3.png"))
    plain = run_cli(
        "model=segformer_b0",
        "model.test_scale=[512,256]",
        "cache=off",
        "output.draw_predictions=false",
        "output.caption=false",
        f"output.dir={tmp_path / 'plain'}",
    )
    assert plain.returncode == 0
    without = cv2.imread(str(tmp_path / "plain/demo_scene/backbone/c3.png"))
    assert with_mask.shape == without.shape == (480, 640, 3)
    assert np.abs(with_mask.astype(int) - without.astype(int)).mean() > 5  # the class tint and legend are drawn


@pytest.mark.slow
def test_pspnet_decode_head_inputs_name_the_dilated_stages_and_record_the_logits(tmp_path):
    out = tmp_path / "psp"
    proc = run_cli(
        "model=pspnet_r50", "recorder=decode_head", "model.test_scale=[256,128]", "cache=off", f"output.dir={out}"
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    got = {(o["layer"], o["level"]): o["shape"] for o in m["outputs"]}
    # 480 x 640 -> 128 x 171; ResNetV1c-D8: stride 4, then three stride-8 stages (dilated), 19 Cityscapes classes
    assert got == {
        ("head_inputs", "c2"): [256, 32, 43],
        ("head_inputs", "c3"): [512, 16, 22],
        ("head_inputs", "c3_2"): [1024, 16, 22],
        ("head_inputs", "c3_3"): [2048, 16, 22],
        ("logits", "out"): [19, 16, 22],
    }


@pytest.mark.slow
def test_slide_inference_is_made_whole_and_images_of_two_sizes_take_two_passes(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, hw in (("a", (120, 160)), ("b", (120, 160)), ("c", (160, 90))):
        cv2.imwrite(str(folder / f"{name}.png"), rng.integers(0, 255, (*hw, 3), dtype=np.uint8))
    out = tmp_path / "many"
    proc = run_cli(
        "model=segformer_b0",
        "experiment=multi_image",
        f"images={folder}",
        "images.batch_size=3",
        "model.test_scale=[128,128]",
        'model.cfg_options=["model.test_cfg.mode=slide","model.test_cfg.crop_size=(64,64)","model.test_cfg.stride=(32,32)"]',
        "cache=off",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["images"]) == 3 and m["forward_passes"] == 2  # a and b share a size; c does not
    assert any("test_cfg.mode='slide'" in n and "whole-image inference" in n for n in m["notes"])
    # whole inference: one c2 map over the whole resized image (96 x 128 -> 24 x 32 at stride 4)
    c2 = next(o for o in m["outputs"] if o["image"] == "a" and o["level"] == "c2")
    assert c2["shape"][1:] == [24, 32]


@pytest.mark.slow
def test_segmentors_diff_level_by_level(tmp_path):
    out = tmp_path / "diff"
    proc = run_cli(
        "experiment=diff",
        "model@model_a=segformer_b0",
        "model@model_b=segformer_b0",
        "model_b.seed=1",
        "model_a.test_scale=[256,128]",
        "model_b.test_scale=[256,128]",
        "cache=off",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert [c["level"] for c in m["comparisons"]] == ["c2", "c3", "c4", "c5"]
    assert all(c["resized_to"] is None and c["cosine"] < 0.999 for c in m["comparisons"])
    assert Path(out / m["comparisons"][0]["panel_file"]).is_file()
