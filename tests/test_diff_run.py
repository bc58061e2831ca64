"""``experiment=diff`` without building models: two fake feature sources with known maps, so that which side is A,
how levels pair, and the numbers are checked exactly (a self-diff cannot tell A from B)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from featvis_run.experiments import diff as diff_experiment
from featvis_run.experiments.diff import paired_levels, run_diff
from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import ImageFeatures
from featvis_run.recording.levels import LevelKey
from featvis_run.store.manifest import ModelRecord

from .test_config import _compose


def key(level: str, layer: str = "neck") -> LevelKey:
    return LevelKey(layer, level)


def test_levels_pair_by_name_whatever_order_each_side_records_them():
    a = [key("p3"), key("p4"), key("p5")]
    b = [key("p6"), key("p5"), key("p4")]  # another model, coarse first, without p3 and with p6
    pairs, note = paired_levels(a, b)
    assert pairs == [("p4", key("p4"), key("p4")), ("p5", key("p5"), key("p5"))]
    assert note == "levels only one model has, not compared: A ['neck/p3'], B ['neck/p6']"


#: what each fake model records: A in fine-to-coarse order, B coarse first, with other values per level
MAPS = {
    "model_a": {"p3": 3.0, "p4": 5.0},
    "model_b": {"p4": 1.0, "p3": 2.0},
}


class FakeSource:
    """Stands in for :class:`~featvis_run.models.source.FeatureSource`: constant maps per level, no model."""

    recorders: dict[str, str] = {}  # the recorder each model key was given, by the last run

    def __init__(self, mc, recorder, cache, timer, key="model", pool=None, side=None):
        self.key, self.timer, self.forward_passes = key, timer, 0
        self.name = f"fake_{key}"
        FakeSource.recorders[key] = recorder.name

    def features(self, images):
        self.forward_passes += 1
        out = []
        for im in images:
            h, w = im.array.shape[:2]
            maps = {
                key(level): np.full((2, h // 8, w // 8), value, np.float32) for level, value in MAPS[self.key].items()
            }
            out.append(ImageFeatures(Geometry.identity((h, w)), None, maps))
        return out

    def model_notes(self):
        return []

    def model_record(self):
        return ModelRecord(self.name, "mmdet", "fake.py", None, None, 0, "cpu", 0)


@pytest.fixture()
def diff_run(tmp_path, monkeypatch):
    monkeypatch.setattr(diff_experiment, "FeatureSource", FakeSource)
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), np.full((32, 48, 3), 90, np.uint8))

    def run(*overrides: str):
        out = tmp_path / "out"
        cfg = _compose("experiment=diff", f"image={image}", "cache=off", f"output.dir={out}", *overrides)
        result = run_diff(cfg, out, {"overrides": list(overrides)})
        return result, json.loads((out / "manifest.json").read_text()), out

    return run


def test_a_signed_diff_is_a_minus_b_level_by_level(diff_run):
    result, manifest, out = diff_run("experiment.diff_mode=signed", "reducer=squeeze_mean")
    assert [m["name"] for m in manifest["models"]] == ["fake_model_a", "fake_model_b"]
    by_level = {c["level"]: c for c in manifest["comparisons"]}
    assert list(by_level) == ["p3", "p4"]  # A's order; B recorded p4 first
    assert by_level["p3"]["mean_abs_diff"] == pytest.approx(1.0)  # |3 - 2|
    assert by_level["p4"]["mean_abs_diff"] == pytest.approx(4.0)  # |5 - 1|
    stats = {o["level"]: o["stats"] for o in manifest["outputs"]}
    assert stats["p3"] == {"min": 1.0, "max": 1.0, "mean": 1.0}  # A - B, not B - A
    assert stats["p4"] == {"min": 4.0, "max": 4.0, "mean": 4.0}
    # positive everywhere: the diff picture is the red end of the diverging map, blended on the grey image
    picture = cv2.imread(str(out / by_level["p3"]["diff_file"]))
    b, g, r = (int(v) for v in picture[-16, 24])  # the 32 x 48 picture under its caption band
    assert r > b + 30 and r > g + 30


def test_an_abs_diff_is_symmetric_but_keeps_the_sides_in_the_panel(diff_run):
    _, manifest, out = diff_run("reducer=squeeze_mean")
    stats = {o["level"]: o["stats"]["mean"] for o in manifest["outputs"]}
    assert stats == {"p3": pytest.approx(1.0), "p4": pytest.approx(4.0)}
    panel = cv2.imread(str(out / manifest["comparisons"][0]["panel_file"]))
    assert panel.shape[0] > 32 and panel.shape[1] >= 3 * 48  # A | B | diff, each at the image's size, captioned


def test_model_b_records_with_recorder_b_when_given(diff_run):
    diff_run("reducer=squeeze_mean")
    assert FakeSource.recorders == {"model_a": "fpn", "model_b": "fpn"}  # one recorder for both by default
    diff_run("reducer=squeeze_mean", "+recorder@recorder_b=backbone", "output.overwrite=true")
    assert FakeSource.recorders == {"model_a": "fpn", "model_b": "backbone"}


def test_numbers_of_a_real_diff_match_formulas_worked_out_here(tmp_path):
    """mean |A - B|, cosine and linear CKA of two related maps, against numpy formulas written in this test."""
    from featvis_run.drawing.render import RenderOptions
    from featvis_run.experiments.diff_levels import DiffSide, draw_level
    from featvis_run.experiments.settings import DrawSettings

    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 5, 7)).astype(np.float32)
    b = (0.5 * a + rng.normal(size=a.shape)).astype(np.float32)
    geom = Geometry.identity((40, 56))
    st = DrawSettings("squeeze_mean", 4, False, RenderOptions(), True, 0.3, "png")
    image = np.zeros((40, 56, 3), np.uint8)
    numbers, _, _, _ = draw_level(
        image, "p3", DiffSide("A", a, (5, 7), geom), DiffSide("B", b, (5, 7), geom), st, "abs"
    )
    x, y = a.astype(np.float64), b.astype(np.float64)
    assert numbers["mean_abs_diff"] == pytest.approx(np.abs(x - y).mean(), rel=1e-9)
    assert numbers["cosine"] == pytest.approx((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()), rel=1e-9)
    # linear CKA with positions as samples (35 x 6 matrices), centred per channel
    xs, ys = x.reshape(6, -1).T, y.reshape(6, -1).T
    xs, ys = xs - xs.mean(0), ys - ys.mean(0)
    hsic = lambda p, q: np.linalg.norm(q.T @ p) ** 2  # noqa: E731
    want = hsic(xs, ys) / np.sqrt(hsic(xs, xs) * hsic(ys, ys))
    assert numbers["cka"] == pytest.approx(want, rel=1e-9)
    assert 0.2 < want < 0.9  # related but not equal: a number that can tell formulas apart
