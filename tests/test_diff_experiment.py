"""``experiment=diff`` end to end: self-diff is zero, R101 vs R50 writes every level, channel mismatch handled."""

import json

import cv2
import pytest

from .test_cli import run_cli

pytestmark = pytest.mark.slow


def manifest(out):
    return json.loads((out / "manifest.json").read_text())


def test_a_model_against_itself_has_zero_diff_and_cka_one(scene_image, tmp_path, tiny_config):
    out = tmp_path / "self"
    proc = run_cli(
        "experiment=diff",
        f"image={scene_image}",
        f"model_a.mmdet_config={tiny_config}",
        f"model_b.mmdet_config={tiny_config}",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert [c["level"] for c in m["comparisons"]] == ["p3", "p4", "p5", "p6", "p7"]
    for c in m["comparisons"]:
        assert c["mean_abs_diff"] == 0.0 and c["cosine"] == pytest.approx(1.0) and c["cka"] == pytest.approx(1.0)
        assert c["elementwise"] and c["resized_to"] is None
    assert all(o["stats"]["max"] == 0.0 for o in m["outputs"])
    assert len(m["models"]) == 2 and "CKA" in proc.stdout


def test_retinanet_r101_vs_r50_writes_all_levels_with_numbers(scene_image, tmp_path):
    out = tmp_path / "r101_r50"
    small = '["test_dataloader.dataset.pipeline.1.scale=(160,160)"]'
    proc = run_cli(
        "experiment=diff",
        "model@model_a=retinanet_r101",
        "model@model_b=retinanet_r50",
        f"model_a.cfg_options={small}",
        f"model_b.cfg_options={small}",
        f"image={scene_image}",
        "experiment.diff_mode=signed",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert [md["name"] for md in m["models"]] == ["retinanet_r101_fpn_2x_coco", "retinanet_r50_fpn_2x_coco"]
    assert m["diff_mode"] == "signed"
    for c in m["comparisons"]:
        assert c["mean_abs_diff"] > 0.0 and -1.0 <= c["cosine"] <= 1.0 and 0.0 <= c["cka"] <= 1.0
        assert (out / c["diff_file"]).exists()
        panel = cv2.imread(str(out / c["panel_file"]))
        assert panel.shape[1] >= 3 * 400 and panel.shape[0] > 240  # A | B | diff at the image's size, captioned
    assert len(m["comparisons"]) == 5


def test_different_channel_counts_and_grids_are_compared_not_crashed(scene_image, tmp_path, tiny_config):
    wide = tmp_path / "wide.py"
    wide.write_text(
        f"_base_ = '{tiny_config}'\n"
        "model = dict(neck=dict(out_channels=24), bbox_head=dict(in_channels=24, feat_channels=24))\n"
    )
    out = tmp_path / "mismatch"
    proc = run_cli(
        "experiment=diff",
        f"image={scene_image}",
        f"model_a.mmdet_config={tiny_config}",
        f"model_b.mmdet_config={wide}",
        "model_b.test_scale=[96,96]",
        "reducer=none",
        "topk=4",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    p3 = m["comparisons"][0]
    assert p3["shape_a"][0] == 16 and p3["shape_b"][0] == 24
    assert not p3["elementwise"] and p3["mean_abs_diff"] is None and 0.0 <= p3["cka"] <= 1.0
    assert p3["resized_to"] is not None  # the 96-px input gives B a smaller grid
    diff_p3 = next(o for o in m["outputs"] if o["level"] == "p3")
    assert diff_p3["valid_hw"] == p3["resized_to"] == diff_p3["shape"][1:]  # the common grid covers the image
    assert "channel counts differ" in p3["note"] and "channel counts differ" in proc.stdout


def test_levels_pair_by_name_after_recording(scene_image, tmp_path, tiny_config):
    # model B's FPN starts one level lower: P2-P6 against A's P3-P7 compares P3-P6
    p2_config = tmp_path / "tiny_p2.py"
    p2_config.write_text(f"_base_ = '{tiny_config}'\nmodel = dict(neck=dict(start_level=0))\n")
    out = tmp_path / "pairs"
    proc = run_cli(
        "experiment=diff",
        f"image={scene_image}",
        f"model_a.mmdet_config={tiny_config}",
        f"model_b.mmdet_config={p2_config}",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert [c["level"] for c in m["comparisons"]] == ["p3", "p4", "p5", "p6"]
    p3 = m["comparisons"][0]
    assert p3["shape_a"] == p3["shape_b"] and p3["resized_to"] is None  # the same stride, the same grid
    note = "levels only one model has, not compared: A ['neck/p7'], B ['neck/p2']"
    assert note in m["notes"] and "levels only one model has" in proc.stdout
    # nothing in common: one line naming both sides
    proc = run_cli(
        "experiment=diff",
        f"image={scene_image}",
        f"model_a.mmdet_config={tiny_config}",
        f"model_b.mmdet_config={tiny_config}",
        "+recorder@recorder_b=backbone",
        f"output.dir={tmp_path / 'x'}",
    )
    assert proc.returncode == 2
    assert "pairs levels by name" in proc.stderr and "backbone/c2" in proc.stderr and "neck/p3" in proc.stderr


def test_diff_over_a_list_of_images_with_topk_grids(scene_image, tmp_path, tiny_config):
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), cv2.imread(str(scene_image))[:, ::-1][:200])
    out = tmp_path / "many"
    proc = run_cli(
        "experiment=diff",
        f"images=[{scene_image},{other}]",
        f"model_a.mmdet_config={tiny_config}",
        f"model_b.mmdet_config={tiny_config}",
        "model_b.seed=7",
        "reducer=none",
        "topk=4",
        "experiment.diff_mode=relative",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert {c["image"] for c in m["comparisons"]} == {"scene", "other"} and len(m["comparisons"]) == 10
    for o in m["outputs"]:
        assert len(o["channels"]) == 4 and o["stats"]["min"] >= 0.0 and o["stats"]["max"] <= 1.0
    # different seeds, different features (levels with a handful of positions make linear CKA degenerate)
    assert all(c["cka"] < 0.99 for c in m["comparisons"] if c["shape_a"][1] * c["shape_a"][2] >= 16)
    assert (out / "other/panel/p3.png").exists()
