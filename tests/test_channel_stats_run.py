"""Channel statistics and the atlas on the shipped demo model (``analysis.channels``, ``analysis.top_images``):
the table against the saved feature arrays, a resumed run against an uninterrupted one, two shards merged at a
sweep's end against one process, and a planted dead channel found, and only it.

The expected values are computed here from the ``<level>.features.npy`` arrays the run saves (its valid cells), with
plain numpy over all images at once, not with the streaming code under test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from featvis_run.demo.shapes import make_scene
from featvis_run.paths import DEMO_CHECKPOINT

from .test_cli import run_cli

pytestmark = pytest.mark.slow

LEVELS = [f"p{i}" for i in range(3, 8)]
ANALYSIS = ("analysis.channels=true", "analysis.top_images=2", "output.save_arrays=features")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("channels")
    (root / "images").mkdir()
    for i in range(4):
        cv2.imwrite(str(root / "images" / f"s{i}.png"), make_scene(100 + i, (120, 160), max_objects=3).image)
    return root


def run_args(work: Path, out: Path, *extra: str) -> tuple[str, ...]:
    return (
        "experiment=multi_image",
        f"images={work / 'images'}",
        f"cache.dir={work / 'cache'}",
        f"output.dir={out}",
        *ANALYSIS,
        *extra,
    )


@pytest.fixture(scope="module")
def plain(work: Path) -> tuple[Path, str]:
    """The uninterrupted run over the 4 images, and its stdout."""
    out = work / "plain"
    proc = run_cli(*run_args(work, out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


def read_csv(path: Path) -> dict[tuple[str, str, int], dict[str, str]]:
    lines = path.read_text().splitlines()
    head = lines[0].split(",")
    rows = [dict(zip(head, ln.split(","), strict=True)) for ln in lines[1:]]
    return {(r["layer"], r["level"], int(r["channel"])): r for r in rows}


def features(out: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Per level, each image's saved valid cells (C, h, w), in input order."""
    m = json.loads((out / "manifest.json").read_text())
    by_level: dict[str, list[tuple[str, np.ndarray]]] = {}
    for o in m["outputs"]:
        by_level.setdefault(o["level"], []).append((o["image"], np.load(out / o["arrays"]["features"]["file"])))
    return by_level


def test_channels_csv_and_atlas_equal_numpy_over_the_saved_features(plain):
    out, stdout = plain
    table = read_csv(out / "channels.csv")
    manifest = json.loads((out / "manifest.json").read_text())
    atlas = json.loads((out / "atlas/atlas.json").read_text())
    dead_levels = {}
    for level, maps in features(out).items():
        assert [image for image, _ in maps] == ["s0", "s1", "s2", "s3"]
        cells = np.concatenate([f.reshape(f.shape[0], -1) for _, f in maps], axis=1).astype(np.float64)
        lo, hi = cells.min(1), cells.max(1)
        dead = hi - lo <= 1e-6 * (1 + np.abs(hi))
        dead_levels[level] = np.nonzero(dead)[0].tolist()
        for c in range(cells.shape[0]):
            row = table[("neck", level, c)]
            assert int(row["cells"]) == cells.shape[1] and row["dead"] == ("true" if dead[c] else "false")
            got = [float(row[k]) for k in ("mean", "std", "max", "min", "sparsity")]
            want = [cells[c].mean(), cells[c].std(), hi[c], lo[c], np.mean(cells[c] <= 0)]
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9, err_msg=f"{level} channel {c}")
        # the atlas: per channel the 2 images with the highest maximum (earlier image first on ties) and their cell
        entry = next(e for e in atlas["levels"] if e["level"] == level)
        for c, kept in enumerate(entry["channels"]):
            peaks = []
            for i, (image, f) in enumerate(maps):
                flat = f[c].reshape(-1)
                row_, col = divmod(int(np.argmax(flat)), f.shape[2])
                peaks.append((-float(flat.max()), i, image, [row_, col]))
            want = [(image, -v, cell) for v, _, image, cell in sorted(peaks)[:2]]
            assert [(p["image"], p["value"], p["cell"]) for p in kept] == want, (level, c)
            assert all((out / "atlas" / p["crop"]).is_file() for p in kept)
    assert [lv["dead"] for lv in manifest["analysis"]["levels"]] == [dead_levels[lv] for lv in LEVELS]
    for level in LEVELS:  # the terminal summary lists each level's dead channels
        if dead_levels[level]:
            assert f"dead: neck/{level}: {len(dead_levels[level])} of 64" in stdout
    page = (out / "atlas/index.html").read_text()
    assert "http" not in page and "src='neck/p3/c0_0.jpg'" in page
    assert "href='atlas/index.html'" in (out / "index.html").read_text()
    # every analysis file is recorded (a later overwrite removes exactly these)
    files = set(manifest["analysis"]["files"])
    assert {"channels.csv", "channels.partial.npz", "atlas/index.html", "atlas/atlas.json"} <= files
    assert files >= {p.relative_to(out).as_posix() for p in (out / "atlas").rglob("*.jpg")}


def test_a_resumed_run_writes_the_statistics_and_atlas_of_an_uninterrupted_one(work, plain):
    out, _ = plain
    resumed = work / "resumed"
    shutil.copytree(out, resumed)
    journal = resumed / ".featvis/done.jsonl"
    journal.write_text("".join(journal.read_text().splitlines(keepends=True)[:2]))  # killed after 2 images
    for name in ("channels.csv", "channels.partial.npz", "manifest.json"):
        (resumed / name).unlink()
    shutil.rmtree(resumed / "atlas")
    proc = run_cli(*run_args(work, resumed))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed 2 image(s)" in proc.stdout
    assert (resumed / "channels.csv").read_bytes() == (out / "channels.csv").read_bytes()
    assert (resumed / "atlas/atlas.json").read_bytes() == (out / "atlas/atlas.json").read_bytes()
    assert json.loads((resumed / "manifest.json").read_text())["analysis"]["images"] == 4


def test_two_shards_merged_at_the_sweep_end_equal_one_process(work, plain):
    out, _ = plain
    sweep = work / "sweep"
    args = [a for a in run_args(work, out) if not a.startswith("output.dir=")]
    proc = run_cli("-m", *args, "images.shard=0/2,1/2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged, single = read_csv(sweep / "channels.csv"), read_csv(out / "channels.csv")
    assert list(merged) == list(single)
    for key, row in single.items():
        assert (merged[key]["cells"], merged[key]["dead"]) == (row["cells"], row["dead"]), key
        got = [float(merged[key][k]) for k in ("mean", "std", "max", "min", "sparsity")]
        np.testing.assert_allclose(got, [float(row[k]) for k in ("mean", "std", "max", "min", "sparsity")], rtol=1e-6)
    summary = json.loads((sweep / "summary.json").read_text())
    assert list(summary["channels"]) == ["channels.csv"] and len(summary["channels"]["channels.csv"]) == 2
    assert "channels.csv: merged over 2 shard(s)" in proc.stdout


def test_a_planted_dead_channel_is_flagged_and_only_it(work, plain):
    import torch

    out, _ = plain
    table = read_csv(out / "channels.csv")
    # a p3 channel that is clearly alive on these images (non-zero on most cells)
    planted = next(c for c in range(64) if float(table[("neck", "p3", c)]["sparsity"]) < 0.5)
    state = torch.load(DEMO_CHECKPOINT, map_location="cpu", weights_only=True)
    for name in ("neck.fpn_convs.0.conv.weight", "neck.fpn_convs.0.conv.bias"):  # the conv whose ReLU output is p3
        state["state_dict"][name][planted] = 0
    ckpt = work / "planted.pth"
    torch.save(state, ckpt)
    run = work / "planted"
    proc = run_cli(*run_args(work, run, f"model.checkpoint={ckpt}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    dead = {
        lv["level"]: set(lv["dead"]) for lv in json.loads((run / "manifest.json").read_text())["analysis"]["levels"]
    }
    before = {
        lv["level"]: set(lv["dead"]) for lv in json.loads((out / "manifest.json").read_text())["analysis"]["levels"]
    }
    assert planted not in before["p3"]
    assert dead["p3"] == before["p3"] | {planted}  # the planted channel, and no other, turned dead
    assert all(dead[level] == before[level] for level in LEVELS[1:])  # p4..p7 do not read p3
    row = read_csv(run / "channels.csv")[("neck", "p3", planted)]
    assert (row["dead"], float(row["max"]), float(row["min"]), float(row["sparsity"])) == ("true", 0.0, 0.0, 1.0)
