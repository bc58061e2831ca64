"""What a user sees of a multi-image run, without building a model: a fake feature source stands in for the model
(maps and boxes made from each image's pixels), and everything else is the real run (inputs, run folder and
journal, drawing, manifest). Resuming, the cache's size bound, the score threshold's boundary, EXIF orientation and
greyscale inputs are checked on the files and the manifest the run leaves."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from featvis_run.cli_args import prepare_argv
from featvis_run.errors import ConfigError
from featvis_run.experiments import batch_run
from featvis_run.experiments.run import run_experiment
from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import ImageFeatures
from featvis_run.predictions import Detections
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import register_configs
from featvis_run.store.manifest import ModelRecord

from .conftest import CONF_DIR

register_configs()  # the structured config schema the YAML files extend

#: scores of the fake detector's three boxes: one below, one exactly at, one above output.pred_score_thr=0.5
SCORES = (0.25, 0.5, 0.75)


class FakeSource:
    """Stands in for the feature source: one 2-channel map per image at stride 8, valued by the image's mean
    brightness, and three boxes with :data:`SCORES`. Counts its calls like the real one."""

    calls: list[str] = []  # image ids the model was asked for, over every run of a test

    def __init__(self, timer):
        self.forward_passes, self.timer = 0, timer

    def features(self, images):
        self.forward_passes += 1
        out = []
        for im in images:
            FakeSource.calls.append(im.image_id)
            h, w = im.array.shape[:2]
            feat = np.full((2, max(1, h // 8), max(1, w // 8)), float(im.array.mean()), np.float32)
            feat[1, 0, 0] += 1.0  # not constant: drawn as a heatmap, not as a grey "no values" picture
            boxes = np.array([[1, 1, 6, 6], [2, 2, 7, 7], [3, 3, 8, 8]], np.float32)
            dets = Detections(boxes, np.array(SCORES, np.float32), np.zeros(3, np.int64), ("thing",))
            out.append(ImageFeatures(Geometry.identity((h, w)), dets, {LevelKey("neck", "p3"): feat}))
        return out

    def model_notes(self):
        return []

    def model_record(self):
        return ModelRecord("fake", "mmdet", "fake.py", None, None, 0, "cpu", 1)


@pytest.fixture()
def run(tmp_path, monkeypatch):
    """``run(*overrides)``: a multi-image run into ``tmp_path/out`` through :class:`FakeSource`; returns the
    manifest. The cache lives in ``tmp_path/cache`` unless an override says otherwise."""
    monkeypatch.setattr(batch_run, "feature_source", lambda cfg, settings, cache, timer: FakeSource(timer))
    FakeSource.calls = []
    out = tmp_path / "out"

    def go(*overrides: str) -> dict:
        args = ["experiment=multi_image", f"cache.dir={tmp_path / 'cache'}", f"output.dir={out}"]
        args += ["output.pictures=composite", *overrides]  # these tests look at the pictures (multi_image: maps)
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            dcfg = compose(config_name="config", overrides=prepare_argv(args))  # as the command line gives them
        resolved = OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True)
        run_experiment(OmegaConf.to_object(dcfg), out, resolved)
        return json.loads((out / "manifest.json").read_text())

    go.out = out
    return go


def _scenes(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"s{i}.png"), np.full((24, 32, 3), 40 + 50 * i, np.uint8))
    return folder


def _pictures(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png") if p.parts[-3] != "contact")


def test_a_rerun_resumes_from_the_journal_and_redraws_only_images_whose_pictures_were_deleted(run, tmp_path):
    images = _scenes(tmp_path / "imgs", 3)
    first = run(f"images={images}")
    assert first["resumed_images"] == 0 and first["forward_passes"] == 3 and FakeSource.calls == ["s0", "s1", "s2"]
    assert _pictures(run.out) == ["s0/neck/p3.png", "s1/neck/p3.png", "s2/neck/p3.png"]
    drawn = {p: (run.out / p).read_bytes() for p in _pictures(run.out)}

    FakeSource.calls = []
    again = run(f"images={images}")  # same settings: every image is in the journal with its files
    assert again["resumed_images"] == 3 and again["forward_passes"] == 0 and FakeSource.calls == []
    assert again["outputs"] == first["outputs"] and again["images"] == first["images"]

    (run.out / "s1/neck/p3.png").unlink()  # the user deleted one picture: that image is drawn again
    third = run(f"images={images}")
    assert FakeSource.calls == ["s1"] and third["resumed_images"] == 2 and third["forward_passes"] == 1
    assert {o["file"] for o in third["outputs"]} == set(drawn)
    assert all((run.out / f).is_file() for f in drawn)
    assert (run.out / "s1/neck/p3.png").read_bytes() == drawn["s1/neck/p3.png"]  # the same picture, drawn again


def test_a_rerun_with_other_settings_is_refused_and_overwrite_starts_afresh(run, tmp_path):
    images = _scenes(tmp_path / "imgs", 2)
    first = run(f"images={images}", "reducer=squeeze_mean")
    with pytest.raises(ConfigError, match=r"holds a run with other settings .*reducer\.name.*output\.overwrite=true"):
        run(f"images={images}", "reducer=select_max")
    assert json.loads((run.out / "manifest.json").read_text()) == first  # the refused run changed nothing
    FakeSource.calls = []
    replaced = run(f"images={images}", "reducer=select_max", "output.overwrite=true")
    assert replaced["resumed_images"] == 0 and FakeSource.calls == ["s0", "s1"]
    assert {o["reducer"] for o in replaced["outputs"]} == {"select_max"}
    # keys that do not change the pictures (the cache, debug) resume the same run
    FakeSource.calls = []
    same = run(f"images={images}", "reducer=select_max", "cache=off", "debug=true")
    assert same["resumed_images"] == 2 and FakeSource.calls == []


def test_the_cache_bound_is_read_in_gigabytes(run, tmp_path):
    """README: ``cache.max_gb`` (default 4 GB): 4 * 10**9 bytes, and an entry far below the bound is kept."""
    from featvis_run.experiments.common import activation_cache

    images = _scenes(tmp_path / "imgs", 1)
    m = run(f"images={images}")
    assert m["cache"]["enabled"] and m["cache"]["max_bytes"] == 4 * 10**9
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        dcfg = compose(config_name="config", overrides=[f"cache.dir={tmp_path / 'c2'}", "cache.max_gb=0.001"])
    cache = activation_cache(OmegaConf.to_object(dcfg))  # 1 MB
    rng = np.random.default_rng(0)
    keys = []
    for i in range(3):  # three entries of about 100 KB each (random values: deflate cannot shrink them much)
        feat = rng.normal(size=(1, 200, 250)).astype(np.float32)
        keys.append(f"{i:02d}" + "ab" * 31)
        cache.put(keys[-1], ImageFeatures(Geometry.identity((200, 250)), None, {LevelKey("neck", "p3"): feat}))
    assert cache.warning is None and cache.stats.evicted_entries == 0
    assert all(cache.get(k) is not None for k in keys)  # 300 KB under a 1 MB bound: nothing was evicted


def test_boxes_scoring_exactly_the_threshold_are_counted_and_drawn(run, tmp_path):
    images = _scenes(tmp_path / "imgs", 1)
    m = run(f"images={images}", "output.pred_score_thr=0.5")
    # scores 0.25, 0.5, 0.75 and "at or above output.pred_score_thr": 0.5 and 0.75
    assert m["images"][0]["detections"] == 2 and m["images"][0]["boxes_drawn"] == 2


def _exif_photo(path: Path) -> np.ndarray:
    """A phone photo stored landscape (20 x 40, RGB) with EXIF orientation 6 (shown rotated 90 degrees clockwise);
    returns how it looks upright, in BGR: 40 x 20 with the stored top-left red corner at the top right."""
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :] = (0, 0, 255)  # blue
    stored[:10, :10] = (255, 0, 0)  # red top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the 0th row is the visual right side, the 0th column the visual top
    Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=exif.tobytes())
    upright_rgb = np.rot90(stored, k=-1)  # 90 degrees clockwise
    return np.ascontiguousarray(upright_rgb[..., ::-1])


def test_a_photo_with_exif_orientation_is_drawn_upright(run, tmp_path):
    from featvis_run.store.images import read_image

    folder = tmp_path / "imgs"
    folder.mkdir()
    upright = _exif_photo(folder / "phone.jpg")
    array, _ = read_image(folder / "phone.jpg")
    assert array.shape == (40, 20, 3)
    assert np.abs(array.astype(int) - upright).max() < 40  # JPEG: close, not exact
    m = run(f"images={folder}", "output.alpha=0", "output.draw_boxes=false", "output.caption=false")  # the image
    assert m["images"][0]["size_hw"] == [40, 20]
    picture = cv2.imread(str(run.out / m["outputs"][0]["file"]))
    assert picture.shape == (40, 20, 3)
    assert picture[2, 17].tolist() == pytest.approx([0, 0, 255], abs=40)  # red at the top right
    assert picture[37, 2].tolist() == pytest.approx([255, 0, 0], abs=40)  # blue elsewhere


def test_a_greyscale_image_is_read_as_three_equal_channels(run, tmp_path):
    from featvis_run.store.images import read_image

    folder = tmp_path / "imgs"
    folder.mkdir()
    grey = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (16, 1))  # 16 x 24, one channel
    Image.fromarray(grey, mode="L").save(folder / "grey.png")
    array, _ = read_image(folder / "grey.png")
    assert array.shape == (16, 24, 3)
    for channel in range(3):
        np.testing.assert_array_equal(array[..., channel], grey)
    m = run(f"images={folder}", "output.alpha=0", "output.draw_boxes=false", "output.caption=false")
    assert m["failures"] == [] and m["images"][0]["size_hw"] == [16, 24]
    picture = cv2.imread(str(run.out / m["outputs"][0]["file"]), cv2.IMREAD_UNCHANGED)
    assert picture.shape == (16, 24, 3)
    np.testing.assert_array_equal(picture[..., 1], grey)
