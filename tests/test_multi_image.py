"""Multi-image runs: inputs from folders/globs/lists, batching that does not change maps, per-image failures."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from featvis_run.errors import ConfigError, InputError
from featvis_run.experiments.inputs import selected_inputs
from featvis_run.store.images import collect_images, select_images

from .test_cli import run_cli


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for name, hw in [("b.jpg", (120, 200)), ("a.png", (90, 60)), ("sub/b.jpg", (64, 64))]:
        cv2.imwrite(str(root / name), rng.integers(0, 255, (*hw, 3), dtype=np.uint8))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def test_collect_folder_recursive_sorted_images_only(image_folder):
    names = [p.relative_to(image_folder).as_posix() for p in collect_images(str(image_folder))]
    assert names == ["a.png", "b.jpg", "corrupt.jpg", "sub/b.jpg"]


def test_collect_glob_and_list_deduplicated(image_folder):
    globbed = collect_images(str(image_folder / "*.jpg"))
    assert [p.name for p in globbed] == ["b.jpg", "corrupt.jpg"]
    listed = collect_images([str(image_folder / "a.png"), str(image_folder), str(image_folder / "a.png")])
    assert len(listed) == 4 and listed[0].name == "a.png"
    with pytest.raises(InputError, match="images='/nope': no such file or folder"):
        collect_images("/nope")
    with pytest.raises(InputError, match="matched no image files"):
        collect_images(str(image_folder / "*.gif"))


def test_shards_of_a_folder_get_the_output_names_of_the_whole_run(image_folder):
    whole = selected_inputs(str(image_folder), None, None)
    assert [i for i, _ in whole] == ["a", "b", "corrupt", "b-2"]  # sub/b.jpg is b-2 in every shard
    shards = [selected_inputs(str(image_folder), None, f"{k}/2") for k in range(2)]
    assert shards[1] == [whole[1], whole[3]] and sorted(shards[0] + shards[1]) == sorted(whole)


def test_limit_and_shard():
    paths = [Path(f"{i}.jpg") for i in range(10)]
    assert select_images(paths, 4, None) == paths[:4]
    shards = [select_images(paths, None, f"{i}/3") for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(paths) and shards[1] == [paths[1], paths[4], paths[7]]
    assert select_images(paths, 5, "1/2") == [paths[1], paths[3]]
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(ConfigError, match="images.shard="):
            select_images(paths, None, bad)
    with pytest.raises(ConfigError, match="images.limit=0"):
        select_images(paths, 0, None)


def test_batched_maps_equal_one_by_one_for_images_of_different_sizes(tiny_config):
    from featvis_run.maps.geometry import crop_valid
    from featvis_run.models.source import FeatureSource
    from featvis_run.schema import ModelConfig, RecorderConfig
    from featvis_run.store.cache import ActivationCache
    from featvis_run.store.images import InputImage
    from featvis_run.timing import Timer

    mc = ModelConfig(name="tiny", mmdet_config=str(tiny_config), test_scale=[160, 160])
    recorder = RecorderConfig(name="fpn", recorders={"neck": {"source": "neck"}})
    source = FeatureSource(mc, recorder, ActivationCache(None), Timer())
    rng = np.random.default_rng(0)
    images = [
        InputImage(f"im{i}", Path(f"im{i}.png"), rng.integers(0, 255, hw, dtype=np.uint8), str(i))
        for i, hw in enumerate([(90, 160, 3), (160, 70, 3)])
    ]
    batched = source.features(images)
    singles = [source.features([im])[0] for im in images]
    assert source.forward_passes == 3
    assert batched[0].geometry.input_hw == batched[1].geometry.input_hw == (160, 160)
    assert singles[0].geometry.input_hw == (96, 160)  # alone, the wide image is padded less
    for one, many in zip(singles, batched, strict=True):
        for key, maps in one.features.items():
            alone = crop_valid(maps, one.geometry)
            together = crop_valid(many.features[key], many.geometry)
            assert alone.shape == together.shape, key
            np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4 * float(np.abs(alone).max()))


@pytest.mark.slow
def test_folder_run_survives_a_corrupt_file_and_keeps_duplicate_stems_apart(image_folder, tmp_path, tiny_config):
    out = tmp_path / "multi"
    proc = run_cli(
        "experiment=multi_image",
        f"images={image_folder}",
        "images.batch_size=2",
        "model=retinanet_r50",
        f"model.mmdet_config={tiny_config}",
        f"output.dir={out}",
        "output.pictures=composite",  # pictures and contact sheets (multi_image stores maps by default)
        "output.caption=false",
        "experiment.contact_tile=160",
    )
    assert proc.returncode == 1, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "failed" and m["experiment"] == "multi_image"
    assert [f["item"] for f in m["failures"]] == [str(image_folder / "corrupt.jpg")]
    assert "not an image" in m["failures"][0]["reason"]
    assert [i["path"] for i in m["images"]] == [str(image_folder / n) for n in ("a.png", "b.jpg", "sub/b.jpg")]
    assert {o["image"] for o in m["outputs"]} == {"a", "b", "b-2"}
    assert (out / "b/neck/p3.png").exists() and (out / "b-2/neck/p3.png").exists()
    sheets = {(s["layer"], s["level"]): s["file"] for s in m["contact_sheets"]}
    assert sheets[("neck", "p3")] == "contact/neck/p3.png" and len(sheets) == 5
    sheet = cv2.imread(str(out / "contact/neck/p3.png"))
    # 3 images -> a 2 x 2 grid, 4 px gaps, of 160 px high thumbnails padded white to the widest one (b.jpg:
    # 120 x 200 -> 160 x 267), each whole (its caption in a dark band above it), under the sheet's title band:
    # each tile is the image's own p3.png scaled to 160 px (nearest)
    assert sheet.shape[1] == 2 * 267 + 4 and sheet.shape[0] > 2 * 160 + 4
    tops = {}
    for (row, col), image_id in zip([(0, 0), (0, 1), (1, 0)], ["a", "b", "b-2"], strict=True):
        picture = cv2.imread(str(out / image_id / "neck/p3.png"))
        width = round(picture.shape[1] * 160 / picture.shape[0])
        thumb = cv2.resize(picture, (width, 160), interpolation=cv2.INTER_NEAREST)
        x = col * 271
        found = [y for y in range(sheet.shape[0] - 159) if np.array_equal(sheet[y : y + 160, x : x + width], thumb)]
        assert len(found) == 1, image_id
        y = tops[(row, col)] = found[0]
        assert np.median(sheet[y - 6 : y, x : x + width]) < 64  # the dark caption band right above the tile
        assert (sheet[y : y + 160, x + width : x + 267] == 255).all()
    assert tops[(0, 0)] == tops[(0, 1)] and tops[(1, 0)] >= tops[(0, 0)] + 160 + 4
    assert (sheet[tops[(1, 0)] :, 271:] == 255).all()  # the fourth cell is empty
    assert "corrupt.jpg" in proc.stdout and "3 images, 1 failed" in proc.stdout
    umask = os.umask(0)
    os.umask(umask)
    for f in (out / "manifest.json", out / "b/neck/p3.png"):  # readable by others as the umask allows
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, oct(f.stat().st_mode)


@pytest.mark.slow
def test_multi_image_with_image_runs_that_one_file(scene_image, tmp_path, tiny_config):
    out = tmp_path / "one"
    args = ("model=retinanet_r50", f"model.mmdet_config={tiny_config}", f"output.dir={out}")
    proc = run_cli("experiment=multi_image", f"image={scene_image}", *args)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert [i["path"] for i in m["images"]] == [str(scene_image)]


@pytest.mark.slow
def test_list_of_images_with_limit_and_shard(image_folder, tmp_path, tiny_config):
    out = tmp_path / "shard"
    proc = run_cli(
        "experiment=multi_image",
        f"images=[{image_folder / 'a.png'},{image_folder / 'b.jpg'},{image_folder / 'sub/b.jpg'}]",
        "images.limit=2",
        "images.shard=1/2",
        "model=retinanet_r50",
        f"model.mmdet_config={tiny_config}",
        f"output.dir={out}",
        "experiment.contact_sheet=false",
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert [i["path"] for i in m["images"]] == [str(image_folder / "b.jpg")]
    assert "contact_sheets" not in m


@pytest.mark.slow
def test_threaded_drawing_writes_the_same_files_as_the_serial_path(image_folder, tmp_path, monkeypatch):
    (image_folder / "corrupt.jpg").unlink()
    outs = {}
    for workers in ("0", "2"):
        monkeypatch.setenv("FEATVIS_DRAW_WORKERS", workers)
        outs[workers] = out = tmp_path / f"workers{workers}"
        args = ("experiment=multi_image", f"images={image_folder}", "cache=off", "output.pictures=both")
        proc = run_cli(*args, f"output.dir={out}")
        assert proc.returncode == 0, proc.stderr
    pictures = {w: sorted(p.relative_to(o) for p in o.rglob("*.png")) for w, o in outs.items()}
    assert pictures["0"] == pictures["2"] and len(pictures["0"]) == 3 * 5 + 5  # 3 images x 5 levels + 5 sheets
    arrays = {w: sorted(p.relative_to(o) for p in o.rglob("*.npy")) for w, o in outs.items()}
    assert arrays["0"] == arrays["2"] and len(arrays["0"]) == 3 * 5
    for rel in pictures["0"] + arrays["0"]:
        assert (outs["0"] / rel).read_bytes() == (outs["2"] / rel).read_bytes(), rel
    serial, threaded = (json.loads((o / "manifest.json").read_text()) for o in outs.values())
    assert serial["outputs"] == threaded["outputs"] and serial["images"] == threaded["images"]
