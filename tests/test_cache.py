"""The activation cache: round trip, keys, corrupt entries, concurrent writers, and runs that hit it."""

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import ImageFeatures
from featvis_run.predictions import Detections
from featvis_run.recording.levels import LevelKey
from featvis_run.store.cache import ActivationCache

from .test_cli import run_cli


def item(seed: int = 0) -> ImageFeatures:
    rng = np.random.default_rng(seed)
    feats = {LevelKey("neck", f"p{i}"): rng.normal(size=(8, 40 // i, 30 // i)).astype(np.float32) for i in (3, 4)}
    dets = Detections(
        rng.random((2, 4)).astype(np.float32), np.array([0.9, 0.2], np.float32), np.array([1, 0]), ("a", "b")
    )
    return ImageFeatures(Geometry((100, 80), (50, 40), (64, 64)), dets, feats)


def test_round_trip(tmp_path):
    cache = ActivationCache(tmp_path)
    key = cache.key("model", "image", {"r": 1})
    cache.put(key, item())
    got = cache.get(key)
    want = item()
    assert got.geometry == want.geometry and got.detections.class_names == ("a", "b")
    np.testing.assert_array_equal(got.detections.boxes, want.detections.boxes)
    assert list(got.features) == list(want.features)
    for k in want.features:
        np.testing.assert_array_equal(got.features[k], want.features[k])
    assert cache.stats.hits == 1 and cache.size_bytes() > 0


def test_key_depends_on_model_image_and_recorder_only():
    cache = ActivationCache(None)
    base = cache.key("m", "img", {"neck": "p3"})
    assert base == cache.key("m", "img", {"neck": "p3"})
    assert len({base, cache.key("m2", "img", {"neck": "p3"}), cache.key("m", "img2", {"neck": "p3"})}) == 3
    assert base != cache.key("m", "img", {"neck": "p4"})


def test_truncated_entry_is_recomputed_not_crashed(tmp_path):
    cache = ActivationCache(tmp_path)
    key = cache.key("m", "i", {})
    cache.put(key, item())
    (path,) = tmp_path.rglob("*.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert cache.get(key) is None
    assert cache.stats.corrupt == 1 and not path.exists()


def test_disabled_cache_stores_nothing(tmp_path):
    cache = ActivationCache(None)
    cache.put("k", item())
    assert cache.get("k") is None and cache.size_bytes() == 0 and not cache.enabled


def _writer(args):
    root, key, seed, rounds = args
    cache = ActivationCache(Path(root))
    seen = 0
    for _ in range(rounds):
        cache.put(key, item(seed))
        got = cache.get(key)
        if got is not None:  # never torn: it decodes, and it is one writer's complete entry
            seen += 1
            assert got.features[LevelKey("neck", "p3")].shape == (8, 13, 10)
    return seen, cache.stats.corrupt


def test_concurrent_writers_never_leave_torn_entries(tmp_path):
    key = ActivationCache(tmp_path).key("m", "i", {})
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_writer, [(str(tmp_path), key, 0, 25)] * 4)
    assert all(seen == 25 and corrupt == 0 for seen, corrupt in results)
    assert len(list(tmp_path.rglob("*.npz"))) == 1 and not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_second_run_with_other_drawing_options_hits_the_cache(scene_image, tmp_path, tiny_config):
    common = [
        f"image={scene_image}",
        "model=retinanet_r50",
        f"model.mmdet_config={tiny_config}",
        f"cache.dir={tmp_path / 'cache'}",
    ]
    first = run_cli(*common, f"output.dir={tmp_path / 'a'}")
    second = run_cli(*common, "reducer=none", "topk=4", "use_norm=true", f"output.dir={tmp_path / 'b'}")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    m1 = json.loads((tmp_path / "a/manifest.json").read_text())
    m2 = json.loads((tmp_path / "b/manifest.json").read_text())
    assert (m1["cache_hit"], m1["forward_passes"]) == (False, 1)
    assert (m2["cache_hit"], m2["forward_passes"]) == (True, 0)
    assert "model_load" not in m2["timings"] and m2["cache"]["size_bytes"] > 0
    assert m2["models"][0]["weights"] == "random init" and m2["models"][0]["num_classes"] == 3
    assert len(m2["outputs"][0]["channels"]) == 4
    # a truncated entry is detected and recomputed
    (entry,) = (tmp_path / "cache").rglob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    third = run_cli(*common, f"output.dir={tmp_path / 'c'}")
    assert third.returncode == 0, third.stderr
    m3 = json.loads((tmp_path / "c/manifest.json").read_text())
    assert m3["cache"]["corrupt_recomputed"] == 1 and m3["forward_passes"] == 1
    # cache=off runs the model and writes nothing
    off = run_cli(*common, "cache=off", f"output.dir={tmp_path / 'd'}")
    m4 = json.loads((tmp_path / "d/manifest.json").read_text())
    assert off.returncode == 0 and m4["forward_passes"] == 1 and m4["cache"]["written_bytes"] == 0
