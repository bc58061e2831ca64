"""The report page in a real browser (Debian's chromium through Playwright), opened from ``file://``: offline, no
errors, cellAt equal to the saved arrays where FORMAT.md's geometry says, alpha, colormaps, scales, channels, the
split index. Run folders are made by hand (tests/fake_runs.py), so no model is built; the demo model's runs are in
tests/test_report_browser_runs.py."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from featvis_run.report.page import writer

from .browser import assert_offline_and_clean, browser  # noqa: F401  (the session fixture)
from .fake_runs import CHANNELS, expected_cell, make_run


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # a folder name a URL would misread: the page must encode it
    out = tmp_path_factory.mktemp("runs") / "run #1 ü%"
    make_run(out)
    return out


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def test_the_page_loads_offline_with_no_error_and_every_picture(browser, fake_run):  # noqa: F811
    opened = browser.open(fake_run / "index.html")
    assert_offline_and_clean(opened, fake_run)
    assert opened.eval("document.images.length") == 3  # the first image's photo under each of its 3 levels
    assert opened.eval("document.querySelectorAll('.panel canvas.map').length") == 3


def _pixels(m: dict, image: str, level: str, out: dict) -> list[tuple[float, float]]:
    """Pixels to probe: corners, cell borders' neighbours, the image's edges and just outside it."""
    h, w = next(i["geometry"]["ori_hw"] for i in m["images"] if i["id"] == image)
    pts = [(0, 0), (w - 0.01, h - 0.01), (w / 2, h / 2), (w - 1, 0), (0, h - 1), (-1, 5), (5, h), (w, 0)]
    rng = np.random.default_rng(len(level))
    pts += [(float(x), float(y)) for x, y in zip(rng.uniform(0, w, 12), rng.uniform(0, h, 12), strict=True)]
    return pts


@pytest.mark.parametrize("image", ["padded", "centred"])
def test_cell_at_is_the_saved_array_at_the_cell_the_geometry_gives(browser, fake_run, image):  # noqa: F811
    opened = browser.open(fake_run / "index.html")
    m = _manifest(fake_run)
    for out in (o for o in m["outputs"] if o["image"] == image):
        arr = np.load(fake_run / out["arrays"]["map"]["file"])
        for x, y in _pixels(m, image, out["level"], out):
            got = opened.eval("a => window.featvis.cellAt(...a)", [image, "neck", out["level"], x, y])
            cell = expected_cell(m, image, out["level"], x, y)
            if cell is None:
                assert got is None, (out["level"], x, y, got)
                continue
            assert got is not None and (got["row"], got["col"]) == cell, (out["level"], x, y, got, cell)
            assert got["value"] == pytest.approx(float(arr[cell]), rel=1e-3, abs=1e-4)


def _stack_pixels(opened) -> np.ndarray:
    png = opened.page.locator(".panel .stack").first.screenshot()
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.int32)


def test_the_alpha_slider_changes_the_drawn_pixels(browser, fake_run):  # noqa: F811
    opened = browser.open(fake_run / "index.html")
    before = _stack_pixels(opened)
    opened.page.locator("#alpha").fill("1")
    opaque = _stack_pixels(opened)
    opened.page.locator("#alpha").fill("0")
    photo_only = _stack_pixels(opened)
    assert opened.eval("getComputedStyle(document.querySelector('canvas.map')).opacity") == "0"
    assert np.abs(opaque - before).mean() > 5 and np.abs(photo_only - before).mean() > 5
    assert np.abs(opaque - photo_only).mean() > 10


def test_colormap_and_scale_mode_redraw_from_the_values(browser, fake_run):  # noqa: F811
    opened = browser.open(fake_run / "index.html")
    url = "document.querySelector('canvas.map').toDataURL()"  # drawn from values: never tainted
    jet = opened.eval(url)
    opened.page.select_option("#cmap", "grey")
    grey = opened.eval(url)
    assert jet != grey
    # grey: the lowest value of p3 is black and its highest white (per_map: the map's own finite min and max)
    pixels = opened.eval(
        "(() => { const c = document.querySelector('canvas.map'); "
        "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); })()"
    )
    arr = np.load(fake_run / "padded/neck/p3.npy")
    red = np.array(pixels).reshape(arr.shape[0], arr.shape[1], 4)[..., 0]
    assert red[np.unravel_index(arr.argmin(), arr.shape)] == 0
    assert red[np.unravel_index(arr.argmax(), arr.shape)] == 255
    # per_run: the colour bar's ends are the min and max over every map of the run
    opened.page.select_option("#scale-mode", "per_run")
    values = [np.load(p) for p in fake_run.rglob("p?.npy")]
    lo, hi = min(v.min() for v in values), max(v.max() for v in values)
    ticks = opened.eval("Array.from(document.querySelector('.cbar .ticks').children).map(s => Number(s.textContent))")
    assert ticks[0] == pytest.approx(lo, rel=1e-3) and ticks[-1] == pytest.approx(hi, rel=1e-3)


def test_the_channel_browser_pages_through_every_channel_sorted_by_activation(browser, fake_run):  # noqa: F811
    opened = browser.open(fake_run / "index.html")
    feats = np.load(fake_run / "padded/neck/p3.features.npy")
    by_max = list(np.argsort(-feats.reshape(CHANNELS, -1).max(axis=1), kind="stable"))
    shown = opened.eval("Array.from(document.querySelectorAll('#channels .chan')).map(e => Number(e.dataset.channel))")
    assert shown == by_max  # every one of the C channels, highest max first (C < one page)
    opened.page.select_option("#ch-sort", "mean")
    by_mean = list(np.argsort(-feats.reshape(CHANNELS, -1).mean(axis=1), kind="stable"))
    shown = opened.eval("Array.from(document.querySelectorAll('#channels .chan')).map(e => Number(e.dataset.channel))")
    assert shown == by_mean
    assert opened.eval("document.getElementById('ch-range').textContent") == f"1-{CHANNELS} of {CHANNELS}"


def test_a_split_run_links_one_page_per_image(browser, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(writer, "SPLIT_IMAGES", 1)
    run = tmp_path / "split"
    make_run(run)
    index = browser.open(run / "index.html")
    assert_offline_and_clean(index, run)
    hrefs = index.eval("Array.from(document.querySelectorAll('.thumbs a')).map(a => a.getAttribute('href'))")
    assert hrefs == ["pages/padded.html", "pages/centred.html"]
    one = browser.open(run / "pages" / "centred.html")
    assert_offline_and_clean(one, run)
    m = _manifest(run)
    arr = np.load(run / "centred/neck/p4.npy")
    got = one.eval("window.featvis.cellAt('centred', 'neck', 'p4', 60, 30)")
    assert (got["row"], got["col"]) == expected_cell(m, "centred", "p4", 60, 30)
    assert got["value"] == pytest.approx(float(arr[got["row"], got["col"]]), rel=1e-3)
