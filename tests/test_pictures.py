"""``output.pictures`` (composite, maps, both) and readable composite pictures: what each mode writes and records,
the stored input's size, the caption bands, and the labels of a diff's two sides. Expected values are worked out
by hand or with plain numpy."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from featvis_run.drawing.layout import contact_sheet
from featvis_run.drawing.render import RenderOptions
from featvis_run.experiments import batch_run
from featvis_run.experiments.batch_run import run_images
from featvis_run.experiments.diff_levels import side_labels
from featvis_run.experiments.draw import draw_levels
from featvis_run.experiments.evolution import Frame, write_sequence
from featvis_run.experiments.settings import DrawSettings
from featvis_run.experiments.stored import stored_image_hw, write_input_image
from featvis_run.maps.geometry import Geometry
from featvis_run.recording.levels import LevelKey

from .test_config import _compose
from .test_run_folder_trust import FakeSource

P3, P4 = LevelKey("neck", "p3"), LevelKey("neck", "p4")
# a 40 x 64 image padded to a 48 x 64 input: a 6 x 8 map at stride 8 has 5 valid rows (40 / 8)
PADDED = Geometry((40, 64), (40, 64), (48, 64))


def settings(**changes) -> DrawSettings:
    base = DrawSettings("squeeze_mean", 4, False, RenderOptions(overlaid=False), True, 0.3, "png")
    return replace(base, **changes)


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".featvis" not in p.parts}


def feature() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(3, 6, 8)).astype(np.float32)


def test_maps_mode_stores_the_reduced_map_at_feature_resolution_and_no_picture(tmp_path):
    feat = feature()
    want = feat[:, :5, :].mean(axis=0)  # by hand: the 5 valid rows, averaged over channels
    image = np.full((40, 64, 3), 40, np.uint8)
    ((record, picture),) = draw_levels("img", image, {P3: feat}, PADDED, None, settings(pictures="maps"), tmp_path)
    assert picture is None and files(tmp_path) == {"img/neck/p3.npy"}  # no picture of any size
    stored = np.load(tmp_path / "img/neck/p3.npy")
    assert stored.dtype == np.float32 and stored.shape == (5, 8)
    np.testing.assert_allclose(stored, want, rtol=1e-6)
    assert record.file == "img/neck/p3.npy" and record.arrays["map"] == {"file": "img/neck/p3.npy", "shape": [5, 8]}
    assert record.scale == pytest.approx((float(want.min()), float(want.max())))  # the range drawing would use


def test_both_mode_writes_the_picture_and_the_array_and_features_on_request(tmp_path):
    image = np.full((40, 64, 3), 40, np.uint8)
    st = settings(pictures="both", save_arrays="features")
    ((record, _),) = draw_levels("img", image, {P3: feature()}, PADDED, None, st, tmp_path)
    assert files(tmp_path) == {"img/neck/p3.png", "img/neck/p3.npy", "img/neck/p3.features.npy"}
    assert record.file == "img/neck/p3.png" and np.load(tmp_path / "img/neck/p3.features.npy").shape == (3, 5, 8)


@pytest.mark.parametrize(
    ("ori", "img", "inp", "want"),
    [
        ((960, 1280), (800, 1067), (800, 1088), (800, 1067)),  # shrunk to the resized image (RetinaNet, 1333x800)
        ((100, 200), (400, 800), (416, 800), (100, 200)),  # never enlarged
        ((480, 640), (640, 640), (640, 640), (480, 640)),  # a stretched resize keeps the original's aspect
        ((1000, 1000), (1000, 1000), (600, 800), (600, 600)),  # a crop: no larger than the network input
    ],
)
def test_the_stored_input_is_no_larger_than_the_network_input(ori, img, inp, want):
    assert stored_image_hw(Geometry(ori, img, inp)) == want


def test_the_stored_input_is_a_jpeg_of_that_size(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    path = write_input_image(tmp_path, "a b", image, (48, 64))
    assert path == tmp_path / "a_b/image.jpg" and path.read_bytes()[:3] == b"\xff\xd8\xff"
    assert cv2.imread(str(path)).shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("experiment", "value", "want"),
    [("single", None, "both"), ("multi_image", None, "maps"), ("diff", None, "both"), ("multi_image", "both", "both")],
)
def test_pictures_default_per_experiment_and_explicit_choice(experiment, value, want):
    overrides = [f"experiment={experiment}"] + ([f"output.pictures={value}"] if value else [])
    assert DrawSettings.from_config(_compose(*overrides)).pictures == want


def _multi(tmp_path, monkeypatch, images: Path, out: Path, *overrides: str):
    monkeypatch.setenv("FEATVIS_DRAW_WORKERS", "1")
    monkeypatch.setattr(batch_run, "feature_source", lambda *a: FakeSource())
    cfg = _compose("experiment=multi_image", f"images.paths={images}", "cache=off", f"output.dir={out}", *overrides)
    inputs = [(p.stem, p) for p in sorted(images.glob("*.png"))]
    return run_images(cfg, out, {"o": list(overrides)}, inputs, "multi_image")


@pytest.fixture()
def two_images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(folder / f"s{i}.png"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    return folder


def test_multi_image_stores_maps_by_default_records_and_journals_every_file(tmp_path, monkeypatch, two_images):
    out = tmp_path / "run"
    result = _multi(tmp_path, monkeypatch, two_images, out)
    per_image = {"image.jpg", "neck/p3.npy", "neck/p4.npy"}
    assert files(out) == {f"s{i}/{f}" for i in range(2) for f in per_image} | {"manifest.json"}  # no contact sheet
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"][0]["image_file"] == "s0/image.jpg" and manifest["images"][0]["image_file_hw"] == [96, 128]
    assert [o["file"] for o in manifest["outputs"]][:2] == ["s0/neck/p3.npy", "s0/neck/p4.npy"]
    np.testing.assert_array_equal(np.load(out / "s0/neck/p4.npy"), np.full((6, 8), 16, np.float32))  # FakeSource
    journal = [json.loads(line) for line in (out / ".featvis/done.jsonl").read_text().splitlines()]
    assert sorted(journal[1]["files"]) == sorted(f"s1/{f}" for f in per_image)
    assert "contact_sheets" not in result.extra
    # a rerun with composite pictures replaces the run: every recorded file of the maps run goes
    _multi(tmp_path, monkeypatch, two_images, out, "output.pictures=composite", "output.overwrite=true")
    assert not [f for f in files(out) if f.endswith((".npy", ".jpg"))] and "s0/neck/p3.png" in files(out)


def test_maps_write_several_times_fewer_bytes_than_composites(tmp_path, monkeypatch, two_images):
    def written(out: Path) -> int:
        return sum((out / f).stat().st_size for f in files(out) if f.startswith("s"))

    _multi(tmp_path, monkeypatch, two_images, tmp_path / "maps")
    _multi(tmp_path, monkeypatch, two_images, tmp_path / "comp", "output.pictures=composite")
    # two image-sized PNGs of noise per image against one JPEG and two small arrays
    assert written(tmp_path / "comp") > 3 * written(tmp_path / "maps")


def test_a_picture_carries_a_caption_band_naming_its_level(tmp_path):
    image = np.full((40, 64, 3), 40, np.uint8)
    feats = {P3: feature(), P4: feature()}
    plain = draw_levels("img", image, feats, PADDED, None, settings(caption=False), tmp_path / "plain")
    captioned = draw_levels("img", image, feats, PADDED, None, settings(caption=True), tmp_path / "cap")
    p3, p4 = (cv2.imread(str(tmp_path / "cap" / r.file)) for r, _ in captioned)
    bare = cv2.imread(str(tmp_path / "plain" / plain[0][0].file))
    band = p3.shape[0] - bare.shape[0]
    assert band >= 12 and np.array_equal(p3[band:], bare)  # the band sits above the picture, covering nothing
    assert (p3[:band] > 128).any() and np.median(p3[:band]) < 64  # light text on a dark band
    assert not np.array_equal(p3[:band], p4[:band])  # which says the level (p3 vs p4)


def test_contact_sheet_captions_lie_outside_the_tiles():
    tile = np.full((40, 60, 3), 200, np.uint8)
    sheet = contact_sheet([tile, tile], ["scene000", "scene001"], gap=4, rows=1)
    band = sheet.shape[0] - 40
    assert band > 0 and np.array_equal(sheet[band:, :60], tile) and np.array_equal(sheet[band:, 64:], tile)


def test_checkpoint_frames_are_captioned_with_their_checkpoint(tmp_path):
    g = Geometry.identity((32, 48))
    feat = np.random.default_rng(2).normal(size=(2, 4, 6)).astype(np.float32)
    frames = [Frame("epoch_1", feat, g), Frame("epoch_2", feat, g)]
    st = settings(caption=True, pictures="both")
    records, entry, _ = write_sequence(tmp_path, "img", np.zeros((32, 48, 3), np.uint8), P3, frames, st)
    first, second = (cv2.imread(str(tmp_path / r.file)) for r in records)
    band = first.shape[0] - 32  # pictures are drawn at the image's size
    assert band > 0 and np.array_equal(first[band:], second[band:])  # the same map ...
    assert not np.array_equal(first[:band], second[:band])  # ... captioned with its own checkpoint
    assert records[0].arrays["map"]["file"] == "img/neck/p3/epoch_1.npy" and entry["gif"] and entry["strip"]


def test_checkpoints_in_maps_mode_store_frames_as_arrays_only(tmp_path):
    g = Geometry.identity((8, 12))
    feat = np.ones((2, 8, 12), np.float32)
    frames = [Frame("epoch_1", feat, g), Frame("epoch_2", 2 * feat, g)]
    records, entry, _ = write_sequence(
        tmp_path, "img", np.zeros((8, 12, 3), np.uint8), P3, frames, settings(pictures="maps")
    )
    assert [r.file for r in records] == ["img/neck/p3/epoch_1.npy", "img/neck/p3/epoch_2.npy"]
    assert entry["gif"] is None and entry["strip"] is None and not list(tmp_path.rglob("epoch_*.png"))
    np.testing.assert_array_equal(np.load(tmp_path / records[1].file), np.full((8, 12), 2, np.float32))


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        (("retinanet_r101", "/w/r101.pth"), ("retinanet_r50", "/w/r50.pth"), ("retinanet_r101", "retinanet_r50")),
        (("demo_shapes", "/w/epoch_1.pth"), ("demo_shapes", "/w/epoch_12.pth"), ("epoch_1", "epoch_12")),
        (("demo_shapes", "/a/latest.pth"), ("demo_shapes", "/b/latest.pth"), ("a/latest", "b/latest")),
        (("demo_shapes", None), ("demo_shapes", "/w/epoch_3.pth"), ("random init", "epoch_3")),
    ],
)
def test_a_diff_of_one_config_labels_its_sides_by_checkpoint_stem(a, b, want):
    assert side_labels(a[0], a[1], b[0], b[1]) == want
