"""The report pages of real demo-model runs (single, diff, checkpoints, sweep) in chromium: offline and clean,
cellAt equal to the saved maps, the diff's synchronised cursor and model labels, the checkpoint slider, the sweep's
side-by-side comparison. The runs are made once per session by scripts/report_screenshots.py's make_runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from .browser import assert_offline_and_clean, browser, skip_reason  # noqa: F401  (the session fixture)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    spec = importlib.util.spec_from_file_location("report_screenshots", REPO / "scripts" / "report_screenshots.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_runs(tmp_path_factory.mktemp("demo-runs"), light=True)


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


@pytest.mark.parametrize("name", ["single", "diff", "checkpoints", "sweep"])
def test_each_demo_page_loads_offline_with_no_error(browser, demo_runs, name):  # noqa: F811
    opened = browser.open(demo_runs[name] / "index.html")
    assert_offline_and_clean(opened, demo_runs[name])
    assert opened.eval("document.querySelectorAll('.panel canvas.map').length") >= 1


def test_single_cell_at_and_every_channel(browser, demo_runs):  # noqa: F811
    run = demo_runs["single"]
    opened = browser.open(run / "index.html")
    m = _manifest(run)
    g = m["images"][0]["geometry"]
    for out in m["outputs"]:
        arr = np.load(run / out["arrays"]["map"]["file"])
        for x, y in [(0, 0), (321.5, 100.25), (639.9, 479.9), (17, 401)]:
            x_in = x * g["img_hw"][1] / g["ori_hw"][1] + g["offset_hw"][1]
            y_in = y * g["img_hw"][0] / g["ori_hw"][0] + g["offset_hw"][0]
            row = int(y_in // out["stride_hw"][0]) - out["cell_origin"][0]
            col = int(x_in // out["stride_hw"][1]) - out["cell_origin"][1]
            got = opened.eval("a => window.featvis.cellAt(...a)", ["demo_scene", "neck", out["level"], x, y])
            assert (got["row"], got["col"]) == (row, col)
            assert got["value"] == pytest.approx(float(arr[row, col]), rel=1e-3, abs=1e-5)
    opened.page.select_option("#ch-size", "0")  # all channels of the first level on one page
    assert opened.eval("document.querySelectorAll('#channels .chan').length") == m["outputs"][0]["shape"][0] == 64


def test_diff_tells_the_models_apart_and_moves_one_cursor_over_a_b_and_diff(browser, demo_runs):  # noqa: F811
    opened = browser.open(demo_runs["diff"] / "index.html")
    titles = opened.eval("Array.from(document.querySelectorAll('.panel .ptitle')).slice(0, 3).map(t => t.textContent)")
    assert titles[0].startswith("A: demo_shapes (demo_shapes)") and titles[1].startswith("B: demo_shapes (random init)")
    box = opened.page.locator(".panel .stack").first.bounding_box()
    opened.page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    readouts = opened.eval(
        "Array.from(document.querySelectorAll('.panel .readout')).slice(0, 3).map(r => r.textContent)"
    )
    cells = [r.split(" at cell ")[1].split(" · ")[0] for r in readouts]
    assert all(r.startswith("value ") for r in readouts) and len(set(cells)) == 1, readouts


def test_the_checkpoint_slider_shows_each_checkpoint_on_one_scale(browser, demo_runs):  # noqa: F811
    run = demo_runs["checkpoints"]
    opened = browser.open(run / "index.html")
    labels = [c["checkpoint"] for c in _manifest(run)["checkpoints"]]
    assert opened.eval("window.featvis.checkpoints") == labels == ["epoch_1", "epoch_2"]
    scales = set()
    for i, label in enumerate(labels):
        opened.page.locator("#ckpt").fill(str(i))
        assert opened.eval("document.querySelector('.panel .ptitle').textContent").startswith(
            f"{label}  ({i + 1} of 2)"
        )
        scales.add(opened.eval("document.querySelector('.panel .cbar .ticks').textContent"))
        frame = np.load(run / "demo_scene" / "neck" / "p3" / f"{label}.npy")
        got = opened.eval("window.featvis.cellAt('demo_scene', 'neck', 'p3', 300, 200)")
        assert got["value"] == pytest.approx(float(frame[got["row"], got["col"]]), rel=1e-3, abs=1e-5)
    assert len(scales) == 1  # every checkpoint on the level's one colour scale
    assert opened.eval("Array.from(document.querySelectorAll('.links a')).some(a => a.textContent.startsWith('GIF'))")


def test_sweep_jobs_side_by_side_on_one_image_and_level(browser, demo_runs):  # noqa: F811
    opened = browser.open(demo_runs["sweep"] / "index.html")
    assert opened.eval("document.querySelectorAll('#jobs input[type=checkbox]:checked').length") == 2
    titles = opened.eval("Array.from(document.querySelectorAll('.grid .panel .ptitle')).map(t => t.textContent)")
    assert [t.split("job")[0].strip() for t in titles] == ["reducer=squeeze_mean", "reducer=pixel_wise_max"]
    opened.page.locator("#jobs input[type=checkbox]").nth(1).uncheck()
    assert opened.eval("document.querySelectorAll('.grid .panel').length") == 1
