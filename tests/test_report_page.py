"""The report page without a browser: manifest format 2 placement fields, the inlined data, escaping, splitting,
photos, model labels and predictions (browser tests: tests/test_report_browser.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from featvis_run.experiments.draw import prediction_record
from featvis_run.maps.geometry import Geometry, cell_placement
from featvis_run.predictions import Detections
from featvis_run.report.page import writer
from featvis_run.report.page.data import model_labels
from featvis_run.report.page.writer import embed_json
from featvis_run.report.summary import explained_lines
from featvis_run.store.manifest import ImageRecord, RunResult

from .fake_runs import expected_cell, make_run
from .report_page import page_data

PAGE_DIR = Path(__file__).resolve().parents[1] / "featvis_run" / "report" / "page"


@pytest.mark.parametrize(
    ("feat_hw", "geom", "stride", "origin"),
    [
        # 80 x 120 image padded right and bottom to 96 x 128: cells start at the top-left
        ((12, 16), Geometry((100, 150), (80, 120), (96, 128)), (8.0, 8.0), (0, 0)),
        # the same image centred 32 px down in a 128 x 128 input: p3's first valid row is 32 / 8 = 4
        ((16, 16), Geometry((60, 120), (64, 128), (128, 128), (32, 0)), (8.0, 8.0), (4, 0)),
        ((4, 4), Geometry((60, 120), (64, 128), (128, 128), (32, 0)), (32.0, 32.0), (1, 0)),
        # an offset of 20 px with stride 16: the partly covered cell 1 is the first (floor(20 / 16))
        ((8, 8), Geometry((88, 128), (88, 128), (128, 128), (20, 0)), (16.0, 16.0), (1, 0)),
        # RetinaNet's P6 of a 100 px input: ceil(100 / 64) = 2 cells of stride 64
        ((2, 2), Geometry((100, 100), (100, 100), (100, 100)), (64.0, 64.0), (0, 0)),
    ],
)
def test_stride_and_cell_origin_are_the_hand_computed_ones(feat_hw, geom, stride, origin):
    assert cell_placement(feat_hw, geom) == (stride, origin)


def test_a_run_records_geometry_placement_and_format_version(tmp_path):
    make_run(tmp_path / "run")
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert m["format_version"] == 2
    centred = next(i for i in m["images"] if i["id"] == "centred")
    assert centred["geometry"] == {
        "ori_hw": [60, 120],
        "img_hw": [64, 128],
        "input_hw": [128, 128],
        "offset_hw": [32, 0],
        "affine": None,
    }
    p4 = next(o for o in m["outputs"] if o["image"] == "centred" and o["level"] == "p4")
    assert p4["stride_hw"] == [16.0, 16.0] and p4["cell_origin"] == [2, 0] and p4["valid_hw"] == [4, 8]
    # pixel (0, 0) lies in input row 32, cell 2 = the first valid one; the last image row 59 in input row 95.99
    assert expected_cell(m, "centred", "p4", 0, 0) == (0, 0)
    assert expected_cell(m, "centred", "p4", 119.9, 59.9) == (3, 7)
    assert expected_cell(m, "padded", "p3", 149.9, 99.9) == (9, 14)  # 80 x 120 -> rows 0..9, cols 0..14


def test_inlined_values_are_the_saved_arrays(tmp_path):
    make_run(tmp_path / "run")
    data = page_data(tmp_path / "run" / "index.html")
    assert len(data["maps"]) == 6
    for m in data["maps"]:
        arr = np.load(tmp_path / "run" / m["image"] / "neck" / f"{m['level']}.npy")
        values = np.frombuffer(base64.b64decode(m["values"]), "<f4").reshape(arr.shape)
        np.testing.assert_array_equal(values, arr)
        feats = np.load(tmp_path / "run" / m["image"] / "neck" / f"{m['level']}.features.npy")
        half = np.frombuffer(base64.b64decode(m["features"]["values"]), "<f2").reshape(feats.shape)
        np.testing.assert_allclose(half, feats, rtol=1e-3, atol=1e-4)
        assert m["features"]["max"] == pytest.approx(feats.reshape(feats.shape[0], -1).max(axis=1), abs=1e-5)
    assert {i["photo"] for i in data["images"]} == {"padded/image.jpg", "centred/image.jpg"}


def test_embedded_json_cannot_end_its_script_and_holds_no_web_address():
    value = {"note": "</script><b>&amp;\u2028\u2029 see https://x.org and http://y", "n": [1.5, None]}
    text = embed_json(value)
    for raw in ("<", ">", "&", "\u2028", "\u2029", "http://", "https://"):
        assert raw not in text
    assert json.loads(text) == value


def test_the_page_and_its_template_hold_no_web_address(tmp_path):
    result = make_run(tmp_path / "run")
    page = (result.out_dir / "index.html").read_text()
    for text in [page] + [p.read_text() for p in PAGE_DIR.glob("page.*")]:
        assert "http:" not in text and "https:" not in text and "fetch(" not in text and "XMLHttpRequest" not in text
    assert page.count('<script type="application/json" id="featvis-data">') == 1


def test_a_large_run_is_split_into_one_page_per_image(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "SPLIT_IMAGES", 1)
    result = make_run(tmp_path / "run")
    m = json.loads((result.out_dir / "manifest.json").read_text())
    assert m["pages"] == ["pages/padded.html", "pages/centred.html"]
    index = page_data(result.out_dir / "index.html")
    assert index["split"] == "index" and index["maps"] == []
    assert [p["href"] for p in index["pages"]] == m["pages"]
    one = page_data(result.out_dir / "pages" / "centred.html")
    assert one["base"] == "../" and {x["image"] for x in one["maps"]} == {"centred"}
    assert len(one["outer"]) == 6  # every map's range, for the per_level and per_run scales


def test_a_photo_is_read_only_from_the_runs_own_input(tmp_path):
    import cv2

    from featvis_run.report.page.photos import store_photos

    for name in ("input.png", "elsewhere.png"):
        cv2.imwrite(str(tmp_path / name), np.full((10, 10, 3), 80, np.uint8))
    # a record naming another file than the run's input of that id: no photo is read or written
    image = ImageRecord(str(tmp_path / "elsewhere.png"), (10, 10), (10, 10), id="a")
    assert store_photos(tmp_path, [image], {"a": str(tmp_path / "input.png")}, None) == [image]
    assert not (tmp_path / "a").exists()
    # the run's own input: stored once as <image>/image.jpg
    own = ImageRecord(str(tmp_path / "input.png"), (10, 10), (10, 10), id="a")
    (stored,) = store_photos(tmp_path, [own], {"a": str(tmp_path / "input.png")}, None)
    assert stored.image_file == "a/image.jpg" and stored.image_file_hw == (10, 10)
    assert cv2.imread(str(tmp_path / "a" / "image.jpg")).shape == (10, 10, 3)


def test_two_checkpoints_of_one_config_are_told_apart():
    models = [
        {"name": "demo_shapes", "checkpoint": "/w/epoch_1.pth", "sha256": "aa"},
        {"name": "demo_shapes", "checkpoint": "/w/epoch_12.pth", "sha256": "bb"},
    ]
    assert model_labels(models) == ["demo_shapes (epoch_1)", "demo_shapes (epoch_12)"]
    same = [dict(models[0]), dict(models[0], checkpoint="/v/epoch_1.pth", sha256="cc")]
    assert model_labels(same) == ["demo_shapes (epoch_1) [aa]", "demo_shapes (epoch_1) [cc]"]
    assert model_labels([{"name": "r50"}, {"name": "r101"}]) == ["r50", "r101"]


def test_predictions_are_the_boxes_above_the_threshold_best_first_at_most_max_boxes():
    from types import SimpleNamespace

    dets = Detections(
        np.array([[0, 0, 10, 10], [1, 1, 5, 5], [2, 2, 8, 8], [3, 3, 9, 9]], np.float32),
        np.array([0.5, 0.95, 0.2, 0.7], np.float32),
        np.array([0, 1, 2, 1]),
        ("circle", "square", "triangle"),
    )
    settings = SimpleNamespace(target=None, pred_score_thr=0.3, render=SimpleNamespace(max_boxes=2))
    record = prediction_record(dets, settings)
    assert [(b["label"], b["score"]) for b in record["boxes"]] == [("square", 0.95), ("square", 0.7)]
    assert record["boxes"][0]["bbox"] == [1.0, 1.0, 5.0, 5.0]


def test_the_terminal_summary_names_what_grad_cam_explained(tmp_path):
    explained = {"target": "square", "detections": [{"class": "square", "score": 0.91, "box": [1.2, 2, 30, 40.6]}]}
    image = ImageRecord("/x/scene.png", (10, 10), (10, 10), explained=explained, id="scene")
    result = RunResult("single", tmp_path, {}, (), (image,), ())
    assert explained_lines(result) == ["scene: target square; 1 detection(s): square 0.91 at [1, 2, 30, 41]"]
