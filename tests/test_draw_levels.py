"""Drawing the levels of one image (crop, use_norm, reduce, render, write, record) and what the run records: effects
checked against numbers worked out with plain numpy, never with the code under test."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from featvis_run.drawing.render import RenderOptions
from featvis_run.experiments.draw import draw_levels
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.geometry import Geometry
from featvis_run.predictions import Detections
from featvis_run.recording.levels import LevelKey
from featvis_run.store.manifest import Failure, ImageRecord, ModelRecord, RunResult

from .test_config import _compose

KEY = LevelKey("neck", "p3")
GEOM = Geometry((48, 64), (48, 64), (48, 64))  # a 6 x 8 map at stride 8 covers the 48 x 64 image exactly


def settings(**changes) -> DrawSettings:
    base = DrawSettings("pixel_wise_max", 4, False, RenderOptions(overlaid=False), True, 0.3, "png")
    return replace(base, **changes)


def two_scales() -> np.ndarray:
    """Channel 0 varies by 1000s, channel 1 by 1s: without use_norm the max is channel 0 everywhere."""
    rng = np.random.default_rng(0)
    return np.stack([rng.normal(5000, 1000, (6, 8)), rng.normal(0, 1, (6, 8))]).astype(np.float32)


def draw(tmp_path: Path, feat: np.ndarray, st: DrawSettings, predictions=None, image=None):
    image = np.full((48, 64, 3), 40, np.uint8) if image is None else image
    return draw_levels("img", image, {KEY: feat}, GEOM, predictions, st, tmp_path)


def test_use_norm_standardizes_each_channel_before_reducing(tmp_path):
    feat = two_scales()
    # by hand: each channel to mean 0, sample std 1 (MMRazor's norm), then the max over channels
    z = (feat - feat.mean(axis=(1, 2), keepdims=True)) / feat.std(axis=(1, 2), ddof=1, keepdims=True)
    want = z.max(axis=0)
    ((plain, plain_pic),) = draw(tmp_path / "a", feat, settings(use_norm=False))
    ((normed, normed_pic),) = draw(tmp_path / "b", feat, settings(use_norm=True))
    assert plain.stats["max"] == pytest.approx(float(feat[0].max()), rel=1e-6)
    assert normed.stats["min"] == pytest.approx(float(want.min()), abs=1e-4)
    assert normed.stats["max"] == pytest.approx(float(want.max()), abs=1e-4)
    assert normed.stats["mean"] == pytest.approx(float(want.mean()), abs=1e-4)
    assert not np.array_equal(plain_pic, normed_pic)


def test_non_finite_values_are_counted_and_left_out_of_stats_and_ranking(tmp_path):
    feat = np.zeros((3, 6, 8), np.float32)
    feat[0] = 2.0  # the largest finite sum (47 cells x 2 = 94) despite one NaN
    feat[0, 0, 0] = np.nan
    feat[1] = 1.0
    feat[1, 5, 7] = np.inf
    feat[2, 2, 3] = -np.inf
    ((record, _),) = draw(tmp_path, feat, settings(reducer="none", topk=2))
    assert record.non_finite == 3  # one NaN and two infinities
    # channel sums of finite values: 94, 47, 0 -> channels 0 then 1
    assert record.channels == (0, 1)
    assert record.stats == {"min": 1.0, "max": 2.0, "mean": pytest.approx((47 * 2 + 47 * 1) / 94)}


def test_squeeze_mean_stats_cover_finite_values_only(tmp_path):
    feat = np.ones((2, 6, 8), np.float32)
    feat[1] = 3.0
    feat[:, 0, 0] = np.nan  # missing in every channel: stays missing
    feat[1, 1, 1] = np.inf  # missing in one channel: the mean of the other
    ((record, _),) = draw(tmp_path, feat, settings(reducer="squeeze_mean"))
    # by hand: 46 cells of mean(1, 3) = 2, one cell of 1, one cell missing
    assert record.non_finite == 3
    assert record.stats == {"min": 1.0, "max": 2.0, "mean": pytest.approx((46 * 2 + 1) / 47)}


def test_jpg_format_writes_jpeg_files(tmp_path):
    st = DrawSettings.from_config(_compose("output.format=jpg"))
    assert st.fmt == "jpg"
    plain = replace(st, render=RenderOptions(overlaid=False), caption=False)  # the written file is the picture itself
    ((record, picture),) = draw(tmp_path, two_scales(), plain)
    path = tmp_path / record.file
    assert path.name == "p3.jpg" and path.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG's start-of-image marker
    back = cv2.imread(str(path))
    assert back.shape == picture.shape and np.abs(back.astype(int) - picture).mean() < 8  # lossy, but the picture


DETS = Detections(
    np.array([[8, 8, 40, 40], [20, 4, 60, 30]], np.float32),
    np.array([0.9, 0.2], np.float32),
    np.array([0, 1]),
    ("a", "b"),
)


def test_boxes_follow_draw_boxes_and_the_score_threshold(tmp_path):
    st = DrawSettings.from_config(_compose("output.pred_score_thr=0.5"))
    shown = st.shown(DETS)
    np.testing.assert_array_equal(shown.boxes, DETS.boxes[:1])  # 0.2 < 0.5: dropped
    assert DrawSettings.from_config(_compose("output.draw_boxes=false")).shown(DETS) is None
    overlay = replace(st, render=RenderOptions(overlaid=True), reducer="squeeze_mean")
    feat = np.ones((1, 6, 8), np.float32)
    feat[0, 0, 0] = 0.0  # not constant: a heatmap, not a grey "no values" picture
    ((_, bare),) = draw(tmp_path / "none", feat, overlay)
    ((_, boxed),) = draw(tmp_path / "on", feat, overlay, DETS)
    ((_, off),) = draw(tmp_path / "off", feat, replace(overlay, draw_boxes=False), DETS)
    np.testing.assert_array_equal(off, bare)
    green = np.all(boxed == (0, 255, 0), axis=-1)
    assert green[40, 20] and green[24, 8]  # the 0.9 box's bottom and left edges
    assert not green[30, 60]  # the 0.2 box's right edge is below the threshold


def test_a_run_with_failures_is_saved_as_failed_in_strict_json(tmp_path):
    model = ModelRecord("m", "mmdet", "c.py", None, None, 0, "cpu", 3)
    result = RunResult(
        "multi_image",
        tmp_path,
        {"reducer": "none"},
        (model,),
        (ImageRecord("a.jpg", (4, 4), (8, 8)),),
        (),
        failures=(Failure("b.jpg", "not an image"),),
        extra={"score": float("nan")},
    )
    text = result.save().read_text()
    saved = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert saved["status"] == "failed" and saved["failures"] == [{"item": "b.jpg", "reason": "not an image"}]
    assert saved["score"] is None and saved["models"][0]["weights"] == "random init"
    assert json.loads(replace(result, failures=()).save().read_text())["status"] == "ok"
