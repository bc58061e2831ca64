"""Colour scales, array export, box cap and index.html through the console script (demo model, tiny RetinaNet)."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from .report_page import page_data, pictures
from .test_cli import manifest, run_cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _index_links(out: Path) -> set[str]:
    return pictures(out / "index.html")


def test_single_per_image_scale_arrays_colorbar_box_cap_and_index(tmp_path):
    out = tmp_path / "single"
    proc = run_cli(
        f"output.dir={out}",
        f"cache.dir={tmp_path / 'cache'}",
        "output.scale=per_image",
        "output.save_arrays=both",
        "output.colorbar=true",
        "output.max_boxes=3",
    )
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    outs = m["outputs"]
    # per_image without clipping: one range, the min and max over every level's drawn map
    expected = [min(o["stats"]["min"] for o in outs), max(o["stats"]["max"] for o in outs)]
    assert all(o["scale"] == pytest.approx(expected) for o in outs)
    for o in outs:
        c, h, w = o["shape"]
        feats = np.load(out / o["arrays"]["features"]["file"])
        drawn = np.load(out / o["arrays"]["map"]["file"])
        assert feats.dtype == np.float32 and feats.shape == (c, *o["valid_hw"])
        assert drawn.shape == tuple(o["valid_hw"]) == tuple(o["arrays"]["map"]["shape"])
        np.testing.assert_allclose(drawn, feats.mean(axis=0), rtol=1e-5, atol=1e-6)  # squeeze_mean, by numpy
        assert o["arrays"]["map"]["file"] == o["file"].replace(".png", ".npy")
    # the demo scene is 640 x 480 and its input is not padded: every level covers the image, p3 is 60 x 80
    assert outs[0]["valid_hw"] == [60, 80]
    import cv2

    pic = cv2.imread(str(out / outs[0]["file"]))
    assert pic.shape[0] > 480 and pic.shape[1] > 640  # a caption band above, the colour bar beside the picture
    image = m["images"][0]
    assert image["detections"] > 3 and image["boxes_drawn"] == 3
    assert any("drew the 3 best of" in n and "output.max_boxes=3" in n for n in m["notes"])
    assert _index_links(out) == {o["file"] for o in outs}
    assert ["neck", "p3"] in [[m["layer"], m["level"]] for m in page_data(out / "index.html")["maps"]]
    assert f"{out}" in proc.stdout and "index.html" in proc.stdout


def test_multi_image_per_level_and_per_run_ranges_cover_every_image(scene_image, tmp_path):
    demo = REPO / "featvis_run" / "assets" / "demo_scene.png"
    common = [f"images=[{demo},{scene_image}]", "experiment=multi_image", f"cache.dir={tmp_path / 'cache'}"]
    common.append("output.pictures=both")  # pictures and contact sheets besides the maps
    level, run = tmp_path / "level", tmp_path / "run"
    assert run_cli(*common, f"output.dir={level}", "output.scale=per_level").returncode == 0
    proc = run_cli(*common, f"output.dir={run}", "output.scale=per_run", "output.save_arrays=maps")
    assert proc.returncode == 0, proc.stderr
    lm, rm = manifest(level), manifest(run)
    assert rm["forward_passes"] == 0  # the statistics pass and the drawing read the cache the first run filled
    by_level: dict[str, list] = {}
    for o in lm["outputs"]:
        by_level.setdefault(o["level"], []).append(o)
    assert len(by_level) == 5 and all(len(v) == 2 for v in by_level.values())
    for name, outs in by_level.items():
        expected = [min(o["stats"]["min"] for o in outs), max(o["stats"]["max"] for o in outs)]
        assert all(o["scale"] == pytest.approx(expected) for o in outs)
        assert lm["scale"]["ranges"][name] == pytest.approx(expected)
    everything = [min(o["stats"]["min"] for o in rm["outputs"]), max(o["stats"]["max"] for o in rm["outputs"])]
    assert all(o["scale"] == pytest.approx(everything) for o in rm["outputs"])
    for o in rm["outputs"]:  # the maps' own values span the recorded range
        assert np.load(run / o["arrays"]["map"]["file"]).shape == tuple(o["valid_hw"])
    data = page_data(run / "index.html")
    assert {o["file"] for o in rm["outputs"]} <= _index_links(run)
    assert {s["file"] for s in rm["contact_sheets"]} <= {link["href"] for link in data["links"]}
    assert "scale_stats" in rm["timings"]


def test_fixed_scale_and_clip_percentile_in_a_diff(scene_image, tmp_path, tiny_config):
    out = tmp_path / "diff"
    proc = run_cli(
        "experiment=diff",
        f"image={scene_image}",
        f"model_a.mmdet_config={tiny_config}",
        f"model_b.mmdet_config={tiny_config}",
        "model_b.seed=7",
        f"output.dir={out}",
        f"cache.dir={tmp_path / 'cache'}",
        "output.save_arrays=both",
        "output.clip_percentile=99",
    )
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    for c, o in zip(m["comparisons"], m["outputs"], strict=True):
        a = np.load(out / o["arrays"]["map_a"]["file"])
        b = np.load(out / o["arrays"]["map_b"]["file"])
        both = np.concatenate([a.ravel(), b.ravel()]).astype(np.float64)
        # A and B share one range: the 1st..99th percentiles of both maps together
        assert c["panel_scale"] == pytest.approx(list(np.percentile(both, [1, 99])), rel=1e-5)
        d = np.load(out / o["arrays"]["map"]["file"]).astype(np.float64)
        assert o["scale"] == pytest.approx(list(np.percentile(d, [1, 99])), rel=1e-5)
        fa = np.load(out / o["arrays"]["features_a"]["file"])
        assert fa.shape[0] == 16 and fa.shape[1:] == a.shape
    assert _index_links(out) >= {c["diff_file"] for c in m["comparisons"]}
    roles = [(d["role"], d["level"]) for d in page_data(out / "index.html")["maps"]]
    assert sorted(roles) == sorted((r, c["level"]) for c in m["comparisons"] for r in ("a", "b", "diff"))
    fixed = tmp_path / "fixed"
    args = [a for a in proc.args[1:] if not a.startswith(("output.dir", "output.clip", "output.save"))]
    proc = run_cli(*args, f"output.dir={fixed}", "output.scale=fixed", "output.scale_range=[0,0.5]")
    assert proc.returncode == 0, proc.stderr
    m = manifest(fixed)
    assert all(c["panel_scale"] == [0.0, 0.5] and c["scale"] == [0.0, 0.5] for c in m["comparisons"])
    assert m["scale"] == {"mode": "fixed", "clip_percentile": None, "range": [0.0, 0.5]}


def test_makefile_report_diff_prints_an_absolute_index_path():
    text = subprocess.run(
        ["make", "-n", "report-diff", "REPORTS=rel/reports"], cwd=REPO, capture_output=True, text=True
    ).stdout
    echo = next(line for line in text.splitlines() if line.startswith("echo"))
    path = echo.split("report: ", 1)[1].strip("\"' ")
    assert path.startswith(str(REPO)) and path.endswith("/index.html")
