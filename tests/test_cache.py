"""The activation cache: round trip, keys, corrupt entries, concurrent writers, and runs that hit it."""

import hashlib
import io
import json
import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest

from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import ImageFeatures
from featvis_run.predictions import Detections
from featvis_run.recording.levels import LevelKey
from featvis_run.store.cache import ActivationCache, dequantize, encode_features, quantize_level

from .test_cli import run_cli


def item(seed: int = 0) -> ImageFeatures:
    rng = np.random.default_rng(seed)
    feats = {LevelKey("neck", f"p{i}"): rng.normal(size=(8, 40 // i, 30 // i)).astype(np.float32) for i in (3, 4)}
    dets = Detections(
        rng.random((2, 4)).astype(np.float32), np.array([0.9, 0.2], np.float32), np.array([1, 0]), ("a", "b")
    )
    return ImageFeatures(Geometry((100, 80), (50, 40), (64, 64)), dets, feats)


def test_round_trip_returns_what_quantize_returns(tmp_path):
    cache = ActivationCache(tmp_path)
    key = cache.key("model", "image", {"r": 1})
    cache.put(key, item())
    got = cache.get(key)
    want = cache.quantize(item())  # a fresh run draws these: the same numbers as a later hit
    assert got.geometry == want.geometry and got.predictions.class_names == ("a", "b")
    np.testing.assert_array_equal(got.predictions.boxes, want.predictions.boxes)
    assert list(got.features) == list(want.features)
    for k in want.features:
        np.testing.assert_array_equal(got.features[k], want.features[k])
        # float16 with a power-of-two scale: at most 2^-11 relative to the level's largest value
        original = item().features[k]
        assert np.abs(got.features[k] - original).max() <= np.abs(original).max() * 2.0**-11
    assert cache.stats.hits == 1 and cache.size_bytes() == len(next(tmp_path.rglob("*.npz")).read_bytes())


@pytest.mark.parametrize("magnitude", [1e-13, 1.0, 7e4, 2e9])
def test_quantization_keeps_any_magnitude_finite_and_precise(magnitude):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(3, 5, 7)) * magnitude).astype(np.float32)
    x[0, 0, 0], x[1, 1, 1], x[2, 2, 2] = np.nan, np.inf, -np.inf
    values, scale = quantize_level(x)
    back = dequantize(values, scale)
    finite = np.isfinite(x)
    assert np.isfinite(back[finite]).all()  # 7e4 and 2e9 are beyond float16's 65504
    assert np.abs(back[finite] - x[finite]).max() <= np.abs(x[finite]).max() * 2.0**-11
    assert np.isnan(back[0, 0, 0]) and back[1, 1, 1] == np.inf and back[2, 2, 2] == -np.inf
    assert math.log2(scale).is_integer()


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
    assert cache.quantize(item()).features[LevelKey("neck", "p3")] is not None
    np.testing.assert_array_equal(
        cache.quantize(item()).features[LevelKey("neck", "p3")], item().features[LevelKey("neck", "p3")]
    )


def test_an_unwritable_cache_turns_itself_off_with_one_warning(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = ActivationCache(blocker / "cache")
    cache.put(cache.key("m", "1", {}), item())
    cache.put(cache.key("m", "2", {}), item(1))
    assert not cache.enabled and cache.configured and "could not be written" in cache.warning
    assert capsys.readouterr().err.count("warning:") == 1
    assert cache.get(cache.key("m", "1", {})) is None  # off: a miss, never an exception


def test_least_recently_used_entries_are_evicted_past_the_bound(tmp_path):
    probe = ActivationCache(tmp_path / "probe")
    probe.put("k", item())
    entry = next((tmp_path / "probe").rglob("*.npz")).stat().st_size
    cache = ActivationCache(tmp_path / "c")
    keys = [cache.key("m", str(i), {}) for i in range(4)]
    for i, key in enumerate(keys[:3]):
        cache.put(key, item(i))
        os.utime(cache._path(key), (1000 + i, 1000 + i))  # put order = age
    cache.max_bytes = int(entry * 3.5)
    assert cache.get(keys[0]) is not None  # read: now the most recently used
    doomed = cache._path(keys[1]).stat().st_size + cache._path(keys[2]).stat().st_size
    cache.put(keys[3], item(3))  # 4 entries > 3.5: evict the least recently used down to 80% (2.8 entries)
    left = {k for k in keys if cache._path(k).exists()}
    assert left == {keys[0], keys[3]}
    assert cache.stats.evicted_entries == 2 and cache.stats.evicted_bytes == doomed
    actual = sum(p.stat().st_size for p in (tmp_path / "c").rglob("*.npz"))
    assert cache.size_bytes() == actual


def test_size_comes_from_the_ledger_not_a_walk(tmp_path):
    cache = ActivationCache(tmp_path)
    cache.put(cache.key("m", "1", {}), item())
    (tmp_path / "size.json").write_text(json.dumps({"bytes": 123456789}))
    assert cache.size_bytes() == 123456789  # read, not recounted
    (tmp_path / "size.json").unlink()
    assert cache.size_bytes() == next(tmp_path.rglob("*.npz")).stat().st_size  # rebuilt by one scan when missing


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    stale, fresh = tmp / ".x.npz.abc.tmp", tmp / ".y.npz.def.tmp"
    stale.write_bytes(b"half an entry")
    fresh.write_bytes(b"a writer at work")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    ActivationCache(tmp_path).put("k" * 64, item())
    assert not stale.exists() and fresh.exists()


def _bounded_writer(args):
    root, start, count, bound = args
    cache = ActivationCache(Path(root), max_bytes=bound)
    for i in range(start, start + count):
        cache.put(cache.key("m", str(i), {}), item(i))
    return cache.stats.evicted_entries


def test_concurrent_writers_keep_the_bound_and_an_exact_ledger(tmp_path):
    probe = ActivationCache(tmp_path / "probe")
    probe.put("k", item())
    entry = next((tmp_path / "probe").rglob("*.npz")).stat().st_size
    root = tmp_path / "shared"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        evicted = pool.map(_bounded_writer, [(str(root), i * 10, 10, entry * 6) for i in range(3)])
    actual = sum(p.stat().st_size for p in root.rglob("*.npz"))
    assert actual <= entry * 6 and sum(evicted) >= 30 - 6
    assert ActivationCache(root).size_bytes() == actual


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


def test_entries_are_replaced_by_rename_never_rewritten_in_place(tmp_path):
    """Atomic writes: a reader holding the old file (here a hard link to it) keeps the complete old entry."""
    cache = ActivationCache(tmp_path / "c")
    key = cache.key("m", "i", {})
    cache.put(key, item(0))
    path = cache._path(key)
    held = tmp_path / "held.npz"
    os.link(path, held)
    old_bytes = held.read_bytes()
    cache.put(key, item(1))
    assert held.read_bytes() == old_bytes  # an in-place write would have changed the shared inode
    assert os.stat(path).st_ino != os.stat(held).st_ino and path.read_bytes() != old_bytes
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file beside the entry


def test_swapped_entries_are_recomputed_with_a_note_naming_the_image(tmp_path):
    cache = ActivationCache(tmp_path)
    key_a, key_b = cache.key("m", "sha-a", {}), cache.key("m", "sha-b", {})
    cache.put(key_a, item(0), "sha-a")
    cache.put(key_b, item(1), "sha-b")
    path_a, path_b = cache._path(key_a), cache._path(key_b)
    bytes_a, bytes_b = path_a.read_bytes(), path_b.read_bytes()
    path_a.write_bytes(bytes_b)  # swapped on disk: each file now holds the other image's maps
    path_b.write_bytes(bytes_a)
    assert cache.get(key_a, "/imgs/a.jpg") is None and cache.get(key_b, "/imgs/b.jpg") is None
    assert cache.stats.recomputed == [
        "cache entry for /imgs/a.jpg did not match its key; recomputed",
        "cache entry for /imgs/b.jpg did not match its key; recomputed",
    ]
    assert (cache.stats.hits, cache.stats.misses, cache.stats.corrupt) == (0, 2, 2)
    cache.put(key_a, item(0), "sha-a")  # the caller's recomputed entry replaces the wrong one
    got = cache.get(key_a, "/imgs/a.jpg")
    want = cache.quantize(item(0)).features[LevelKey("neck", "p3")]
    np.testing.assert_array_equal(got.features[LevelKey("neck", "p3")], want)
    assert cache.size_bytes() == sum(p.stat().st_size for p in tmp_path.rglob("*.npz"))


def test_an_entry_of_the_previous_format_is_not_trusted(tmp_path):
    cache = ActivationCache(tmp_path)
    key = cache.key("m", "i", {})
    path = cache._path(key)
    path.parent.mkdir(parents=True)
    with np.load(io.BytesIO(encode_features(item())), allow_pickle=False) as data:  # rewritten as format 5
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    meta["format"], meta["key"] = 5, key
    arrays["meta"] = np.array(json.dumps(meta))
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)
    assert cache.get(key, "x.png") is None
    assert cache.stats.recomputed == ["cache entry for x.png was in an older cache format; recomputed"]


def test_a_truncated_entry_is_named_as_recomputed(tmp_path):
    cache = ActivationCache(tmp_path)
    key = cache.key("m", "i", {})
    cache.put(key, item())
    cache._path(key).write_bytes(b"PK\x03\x04 torn")
    assert cache.get(key, "y.jpg") is None
    assert cache.stats.recomputed == ["cache entry for y.jpg was unreadable (truncated or corrupt); recomputed"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"[]", "it holds a JSON list, not an object"),
        (b'{"x": 5}', "1 of its 1 entries are not sha256 digests"),
        (b"\xff\xfe\x00 junk", "it is not JSON"),
        (b"5", "it holds a JSON int, not an object"),
    ],
)
def test_a_garbage_digest_store_is_rebuilt_with_a_note(tmp_path, content, why):
    from featvis_run.hashing import _MEMO, file_sha256_cached

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    store = tmp_path / "digests.json"
    store.write_bytes(content)
    notes: list[str] = []
    _MEMO.clear()
    digest = file_sha256_cached(weights, store, notes)
    assert digest == hashlib.sha256(b"weights").hexdigest()
    assert notes == [f"the checkpoint digest store {store} was damaged ({why}); rebuilt it"]
    assert list(json.loads(store.read_text()).values()) == [digest]  # rebuilt: only real digests
    _MEMO.clear()
    again: list[str] = []
    assert file_sha256_cached(weights, store, again) == digest and again == []


def test_a_digest_store_entry_that_is_not_a_digest_is_never_returned(tmp_path):
    from featvis_run.hashing import _MEMO, file_sha256_cached

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights")
    st = weights.stat()
    store = tmp_path / "digests.json"
    store.write_text(json.dumps({f"{os.path.realpath(weights)}|{st.st_size}|{st.st_mtime_ns}": 5}))
    _MEMO.clear()
    assert file_sha256_cached(weights, store, []) == hashlib.sha256(b"weights").hexdigest()


def test_the_summary_names_recomputed_entries(tmp_path):
    from featvis_run.report.summary import make_console, print_summary
    from featvis_run.store.manifest import RunResult

    reason = "cache entry for /imgs/[bold]a.jpg did not match its key; recomputed"
    cache = {"enabled": True, "dir": "/c", "hits": 0, "misses": 1, "size_bytes": 0, "recomputed": [reason]}
    extra = {"cache": cache, "cache_hit": False, "forward_passes": 1}
    result = RunResult("single", tmp_path, {}, (), (), (), extra=extra)
    console = make_console()
    with console.capture() as cap:
        print_summary(result, console)
    assert f"note: {reason}" in cap.get().splitlines()


@pytest.mark.parametrize(
    "geometry",
    [
        Geometry((480, 640), (256, 341), (224, 224), (-16, -58)),  # a classifier's centre crop: negative offsets
        Geometry((400, 600), (256, 192), (256, 192), affine=((0.4, -0.3, 10.5), (0.3, 0.4, -7.25))),  # a pose warp
    ],
)
def test_crop_offsets_and_affines_survive_the_cache(tmp_path, geometry):
    cache = ActivationCache(tmp_path)
    key = cache.key("m", "i", {})
    cache.put(key, ImageFeatures(geometry, None, item().features))
    assert cache.get(key).geometry == geometry


def test_an_entry_of_format_6_with_pair_geometry_is_not_trusted(tmp_path):
    # format 6 stored the geometry as four (h, w) pairs and could not hold an affine: such entries are recomputed
    cache = ActivationCache(tmp_path)
    key = cache.key("m", "i", {})
    path = cache._path(key)
    path.parent.mkdir(parents=True)
    with np.load(io.BytesIO(encode_features(item())), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["meta"]))
    meta["format"], meta["key"] = 6, key
    meta["geometry"] = [[100, 80], [50, 40], [64, 64], [0, 0]]
    arrays["meta"] = np.array(json.dumps(meta))
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)
    assert cache.get(key, "x.png") is None
    assert cache.stats.recomputed == ["cache entry for x.png was in an older cache format; recomputed"]
