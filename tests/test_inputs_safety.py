"""Inputs that must not go wrong: output ids unique whatever the names, huge or degenerate images refused from
their header before decoding, damaged JPEGs drawn with a note."""

import json
import random
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from featvis_run.errors import ConfigError, InputError
from featvis_run.experiments.inputs import ImageBatches, unique_ids
from featvis_run.store.images import jpeg_damage, load_image
from featvis_run.store.outputs import safe_name


def ids(*names: str) -> list[str]:
    return unique_ids([Path(n) for n in names])


# ---- output ids ----
def test_ids_of_colliding_stems_written_by_hand():
    # the example: a.png used to get a-2, a-2.jpg's own stem
    assert ids("a-2.jpg", "a.jpg", "a.png") == ["a-2", "a", "a-3"]
    assert ids("a.jpg", "a.png", "a_png.jpg") == ["a", "a-2", "a_png"]
    assert ids("a.jpg", "a-2.png", "a.png", "a-3.jpg") == ["a", "a-2", "a-4", "a-3"]
    assert ids("x/b.jpg", "y/b.jpg", "b.png") == ["b", "b-2", "b-3"]
    assert ids("A.png", "a.jpg") == ["A", "a-2"]  # one folder on a case-insensitive disk
    assert ids("a b.jpg", "a_b.png") == ["a_b", "a_b-2"]  # the same once made file-name safe


def test_a_stem_no_other_input_shares_stays_the_bare_stem():
    assert ids("a.jpg", "b.png", "a-2.jpg") == ["a", "b", "a-2"]
    assert ids("photo.jpg") == ["photo"]


def test_ids_are_unique_for_random_name_sets():
    rng = random.Random(7)
    parts = ["a", "A", "a-2", "a-3", "b", "a_png", "a.b", "a b", "-2", "2"]
    for _ in range(2000):
        names = [f"d{rng.randrange(3)}/{rng.choice(parts)}{rng.choice(['.jpg', '.png', '.JPG'])}" for _ in range(6)]
        got = ids(*names)
        assert len({i.casefold() for i in got}) == len(got), (names, got)
        folded = [safe_name(Path(n).stem).casefold() for n in names]
        for name, stem, image_id in zip(names, folded, got, strict=True):
            if folded.count(stem) == 1:  # shared by no other input: the bare stem
                assert image_id == safe_name(Path(name).stem), (names, got)


# ---- sizes ----
def write_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit greyscale PNG of any size, made cheaply: one all-zero row compressed ``height`` times."""
    row = b"\0" * (1 + (width + 7) // 8)
    co = zlib.compressobj(1)
    body = b"".join(co.compress(row) for _ in range(height)) + co.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def test_a_huge_png_is_refused_from_its_header_in_one_line(tmp_path):
    png = write_png(tmp_path / "huge.png", 30000, 30000)
    assert png.stat().st_size < 2_000_000
    with pytest.raises(InputError) as err:
        load_image(png, "image", 50_000_000)
    assert str(err.value) == (
        f"image={str(png)!r} is 30000x30000 = 900.0 MP, more than images.max_pixels=50000000; downscale it, or "
        "raise images.max_pixels (a run needs about 40 bytes of memory per pixel)"
    )


def test_the_size_refusal_comes_before_decoding(tmp_path):
    """Under a 1.5 GB address-space cap, decoding the 30000x30000 PNG (2.7 GB as BGR) cannot succeed: the
    refusal line proves nothing was decoded, and the same file with the limit lifted fails to decode."""
    png = write_png(tmp_path / "huge.png", 30000, 30000)
    code = textwrap.dedent(
        f"""
        import resource
        from pathlib import Path
        import featvis_run.store.images as images
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
        for limit in (50_000_000, None):
            try:
                images.load_image(Path({str(png)!r}), "image", limit)
                print("decoded")
            except images.InputError as err:
                print("refused" if "more than images.max_pixels=" in str(err) else "failed")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.split()
    assert lines == ["refused", "failed"], proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("hw", "ok"),
    [((8, 8), True), ((7, 100), False), ((8, 512), True), ((8, 513), False), ((513, 8), False), ((100, 6400), True)],
)
def test_degenerate_shapes_are_refused_at_the_limits(tmp_path, hw, ok):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.zeros((*hw, 3), np.uint8))
    if ok:
        assert load_image(path, "image").array.shape == (*hw, 3)
    else:
        with pytest.raises(InputError, match=r"too small or elongated to map \(each side needs at least 8 px and"):
            load_image(path, "image")


def test_a_1x100000_strip_is_refused_in_one_line(tmp_path):
    strip = write_png(tmp_path / "strip.png", 100000, 1)
    with pytest.raises(InputError) as err:
        load_image(strip, "image")
    assert str(err.value).startswith(f"image={str(strip)!r} is 100000x1: too small or elongated") and "\n" not in str(
        err.value
    )


def test_multi_image_batches_list_refused_images_and_go_on(tmp_path):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.full((40, 60, 3), 90, np.uint8))
    inputs = [("huge", write_png(tmp_path / "huge.png", 9000, 9000)), ("good", good)]
    batches = ImageBatches(inputs, 1, strict=False, max_pixels=10_000_000)
    assert [[im.image_id for im in b] for b in batches] == [["good"]]
    assert [f.item for f in batches.failures] == [str(tmp_path / "huge.png")]
    assert "9000x9000 = 81.0 MP, more than images.max_pixels=10000000" in batches.failures[0].reason
    assert [len(b) for b in ImageBatches(inputs, 1, strict=False, max_pixels=None)] == [1, 1]  # null: no limit
    with pytest.raises(InputError, match="images.max_pixels=10000000"):
        list(ImageBatches(inputs, 1, strict=True, max_pixels=10_000_000))
    with pytest.raises(ConfigError, match="images.max_pixels=0 must be a positive"):
        ImageBatches(inputs, 1, strict=False, max_pixels=0)


# ---- damaged JPEGs ----
@pytest.fixture()
def jpeg_bytes() -> tuple[np.ndarray, bytes]:
    rng = np.random.default_rng(0)
    picture = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (9, 9), 3)
    return picture, cv2.imencode(".jpg", picture)[1].tobytes()


def test_a_truncated_jpeg_is_drawn_with_a_note(tmp_path, jpeg_bytes):
    picture, data = jpeg_bytes
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])
    loaded = load_image(path, "images")
    assert loaded.array.shape == picture.shape
    assert np.abs(loaded.array[:40].astype(int) - picture[:40]).mean() < 4  # the top decodes as it was
    assert (loaded.array[-8:] == 128).all()  # the missing bottom is grey
    (note,) = loaded.notes
    assert note.startswith("the JPEG file is damaged: its data ends at byte") and "truncated" in note


def test_a_jpeg_with_a_garbage_tail_gets_a_note_and_intact_ones_do_not(tmp_path, jpeg_bytes):
    _, data = jpeg_bytes
    rng = np.random.default_rng(1)
    cases = {
        "intact": (data, False),
        "video_after_end": (data + b"ftypmp42 appended video" * 10, False),
        "garbage_tail": (data[: len(data) // 2] + rng.integers(0, 255, len(data) // 2, dtype=np.uint8).tobytes(), True),
        "no_end_marker": (data[:-2], True),
    }
    for name, (body, damaged) in cases.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(body)
        assert bool(load_image(path, "images").notes) == damaged, name
    progressive = cv2.imencode(".jpg", jpeg_bytes[0], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert jpeg_damage(progressive) is None and "truncated" in jpeg_damage(progressive[:-500])


# ---- from outside: the CLI on the demo model ----
@pytest.mark.slow
def test_cli_refuses_huge_and_degenerate_inputs_and_keeps_colliding_stems_apart(tmp_path, jpeg_bytes):
    from .test_cli import manifest, run_cli

    huge = write_png(tmp_path / "huge.png", 30000, 30000)
    single = run_cli(f"image={huge}", f"output.dir={tmp_path / 'one'}")
    assert single.returncode == 2 and "Traceback" not in single.stderr
    assert single.stderr.strip().splitlines() == [
        f"featvis-run: error: image={str(huge)!r} is 30000x30000 = 900.0 MP, more than images.max_pixels=50000000; "
        "downscale it, or raise images.max_pixels (a run needs about 40 bytes of memory per pixel)"
    ]
    folder = tmp_path / "imgs"
    folder.mkdir()
    picture, data = jpeg_bytes
    for name in ("a-2.jpg", "a.jpg", "a.png"):
        cv2.imwrite(str(folder / name), picture[:, :, ::-1] if name == "a.png" else picture)
    (folder / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    write_png(folder / "huge.png", 30000, 30000)
    write_png(folder / "strip.png", 100000, 1)
    out = tmp_path / "many"
    # the pictures too (multi_image stores maps by default)
    proc = run_cli(
        "experiment=multi_image", f"images={folder}", "output.pictures=both", f"output.dir={out}", "cache=off"
    )
    assert proc.returncode == 1, proc.stderr
    m = manifest(out)
    by_id = {Path(i["path"]).name: i["id"] for i in m["images"]}
    assert by_id == {"a-2.jpg": "a-2", "a.jpg": "a", "a.png": "a-3", "cut.jpg": "cut"}
    # three images, three folders: a.png's maps are its own (its colours are swapped, so its overlay differs)
    assert not np.array_equal(cv2.imread(str(out / "a/neck/p3.png")), cv2.imread(str(out / "a-3/neck/p3.png")))
    assert sorted(Path(f["item"]).name for f in m["failures"]) == ["huge.png", "strip.png"]
    assert any(n.startswith("cut: the JPEG file is damaged") for n in m["notes"])
    assert "Traceback" not in proc.stderr and "cv2.error" not in proc.stdout + proc.stderr
    assert "failed: " in proc.stdout and "is 100000x1: too small or elongated" in proc.stdout


@pytest.mark.slow
def test_swapped_cache_entries_are_redrawn_as_a_run_without_cache_draws_them(tmp_path):
    from .test_cli import run_cli

    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for name in ("one.png", "two.png"):
        noise = rng.integers(0, 255, (160, 200, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / name), cv2.GaussianBlur(noise, (15, 15), 5))
    # the pictures too (multi_image stores maps by default), without the caption band: it prints the colour range,
    # whose digits may differ between the float16 cache and a run without it
    pictures = ["experiment=multi_image", f"images={folder}", "output.pictures=both", "output.caption=false"]
    common = [*pictures, f"cache.dir={tmp_path / 'cache'}"]
    assert run_cli(*common, f"output.dir={tmp_path / 'first'}").returncode == 0
    first, second = sorted((tmp_path / "cache").rglob("*.npz"))
    first_bytes = first.read_bytes()
    first.write_bytes(second.read_bytes())
    second.write_bytes(first_bytes)
    proc = run_cli(*common, f"output.dir={tmp_path / 'swapped'}")
    off = run_cli(*pictures, "cache=off", f"output.dir={tmp_path / 'off'}")
    assert proc.returncode == 0 and off.returncode == 0, proc.stderr + off.stderr
    for name in ("one", "two"):
        assert f"note: cache entry for {folder / name}.png did not match its key; recomputed" in proc.stdout
    m = json.loads((tmp_path / "swapped/manifest.json").read_text())
    assert m["forward_passes"] == 2 and len(m["cache"]["recomputed"]) == 2
    for name in ("one", "two"):
        for level in ("p3", "p7"):
            drawn = cv2.imread(str(tmp_path / f"swapped/{name}/neck/{level}.png")).astype(int)
            # the cache stores float16 maps: a few colour steps from a run without it, far from the other image
            assert np.abs(drawn - cv2.imread(str(tmp_path / f"off/{name}/neck/{level}.png"))).max() <= 4
            assert np.array_equal(drawn, cv2.imread(str(tmp_path / f"first/{name}/neck/{level}.png")))
