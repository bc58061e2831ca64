"""Rendering: parity with MMEngine's Visualizer.draw_featmap, grids, labels, boxes, magnification."""

import cv2
import numpy as np
import pytest
import torch
from mmengine.visualization import Visualizer

from featvis_run.drawing.boxes import draw_detections
from featvis_run.drawing.colour import blend, colorize
from featvis_run.drawing.layout import auto_arrangement, check_arrangement, magnify, tile_grid
from featvis_run.drawing.render import RenderOptions, render_map
from featvis_run.errors import ConfigError
from featvis_run.maps.geometry import Geometry
from featvis_run.maps.reduce import reduce_channels
from featvis_run.predictions import Detections


def _feat_and_image(c=16, h=24, w=32, img_hw=None, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(c, h, w)).astype(np.float32)
    if c > 5:
        f[5] += np.linspace(0, 3, w, dtype=np.float32)  # a channel with a clearly larger spatial sum
    ih, iw = img_hw or (h, w)
    rgb = rng.integers(0, 255, size=(ih, iw, 3), dtype=np.uint8)
    return f, rgb


def _ours(f, rgb, reducer, topk=20, alpha=0.5):
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    reduced = reduce_channels(f, reducer, topk)
    geom = Geometry.identity(rgb.shape[:2])
    out = render_map(reduced, f.shape[1:], geom, bgr, RenderOptions(overlaid=True, alpha=alpha))
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("reducer", ["squeeze_mean", "select_max"])
@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.8])
def test_same_size_overlay_matches_mmengine(reducer, alpha):
    f, rgb = _feat_and_image()
    ref = Visualizer.draw_featmap(torch.from_numpy(f), rgb, channel_reduction=reducer, alpha=alpha)
    ours = _ours(f, rgb, reducer, alpha=alpha)
    assert ours.shape == ref.shape
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_single_channel_topk_minus_one_matches_mmengine():
    f, rgb = _feat_and_image(c=1)
    ref = Visualizer.draw_featmap(torch.from_numpy(f), rgb, channel_reduction=None, topk=-1)
    ours = _ours(f, rgb, "none", topk=-1)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_upsampled_squeeze_mean_matches_mmengine_which_upsamples_all_channels_first():
    # MMEngine interpolates all C channels to the image size, then averages; we average, then upsample once.
    f, rgb = _feat_and_image(c=64, h=12, w=16, img_hw=(96, 128))
    with pytest.warns(UserWarning):
        ref = Visualizer.draw_featmap(torch.from_numpy(f), rgb, channel_reduction="squeeze_mean")
    ours = _ours(f, rgb, "squeeze_mean")
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.2


def test_topk_grid_shows_the_same_channels_as_mmengine():
    f, _ = _feat_and_image(c=32)
    sums = torch.from_numpy(f).sum(dim=(1, 2))
    ref_idx = tuple(int(i) for i in torch.topk(sums, 6).indices)
    assert reduce_channels(f, "none", topk=6).channels == ref_idx


def test_grid_tiles_row_major_with_labels():
    tiles = [np.full((10, 20, 3), v, np.uint8) for v in (10, 20, 30)]
    grid = tile_grid(tiles, ["", "", ""], rows=2, cols=2, gap=2)
    assert grid.shape == (22, 42, 3)
    assert grid[0, 0, 0] == 10 and grid[0, 22, 0] == 20 and grid[12, 0, 0] == 30
    assert grid[12, 22, 0] == 255  # empty cell stays background
    labelled = tile_grid(tiles, ["ch 7", "ch 3", "ch 1"], rows=1, cols=3, gap=0)
    assert (labelled[:8, :20] != 10).any()  # label drawn in the corner


def test_topk_grid_render_has_arrangement_shape_at_map_resolution():
    f, _ = _feat_and_image(c=8, h=10, w=12)
    reduced = reduce_channels(f, "none", topk=5)
    opts = RenderOptions(overlaid=False, arrangement=(2, 3), min_tile=40, gap=2)
    out = render_map(reduced, (10, 12), Geometry.identity((10, 12)), None, opts)
    # tiles magnified by an integer factor (ceil(40/10) = 4) -> 40 x 48 each
    assert out.shape == (2 * 40 + 2, 3 * 48 + 4, 3)


def test_overlaid_grid_tiles_have_image_size_up_to_max_tile():
    f, rgb = _feat_and_image(c=8, h=6, w=8, img_hw=(48, 64))
    reduced = reduce_channels(f, "none", topk=4)
    out = render_map(reduced, (6, 8), Geometry.identity((48, 64)), rgb, RenderOptions(gap=0))
    assert out.shape == (96, 128, 3)
    small = render_map(reduced, (6, 8), Geometry.identity((48, 64)), rgb, RenderOptions(gap=0, max_tile=32))
    assert small.shape == (48, 64, 3)  # 2 x 2 tiles of 24 x 32
    full = render_map(reduced, (6, 8), Geometry.identity((48, 64)), rgb, RenderOptions(gap=0, max_tile=None))
    assert full.shape == (96, 128, 3)


@pytest.mark.parametrize(("k", "expected"), [(1, (1, 1)), (4, (2, 2)), (5, (2, 3)), (20, (4, 5)), (16, (4, 4))])
def test_auto_arrangement(k, expected):
    assert auto_arrangement(k) == expected


def test_arrangement_too_small_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"layout.arrangement=\[2, 3\] holds 6 maps but 8 .*\[3,3\]"):
        check_arrangement(8, [2, 3])
    with pytest.raises(ConfigError, match="two positive numbers"):
        check_arrangement(4, [0, 4])


def test_alpha_outside_unit_interval_is_rejected():
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ConfigError, match=r"output.alpha=1.5"):
        blend(img, img, 1.5)


def test_colorize_min_max_scales_and_rejects_unknown_colormap():
    m = np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)
    jet = colorize(m)
    assert (jet[0, 0] == cv2.applyColorMap(np.uint8([[0]]), cv2.COLORMAP_JET)[0, 0]).all()
    assert (jet[1, 1] == cv2.applyColorMap(np.uint8([[255]]), cv2.COLORMAP_JET)[0, 0]).all()
    with pytest.raises(ConfigError, match="output.colormap='nope'.*viridis"):
        colorize(m, "nope")


def test_magnify_uses_integer_nearest_factor():
    img = np.arange(6, dtype=np.uint8).reshape(2, 3, 1).repeat(3, axis=2)
    big = magnify(img, 5)
    assert big.shape == (6, 9, 3)
    assert (big[:3, :3] == 0).all() and (big[3:, 6:] == 5).all()
    assert magnify(img, 0) is img


def test_boxes_are_drawn_at_image_coordinates_on_single_overlays_only():
    f = np.zeros((4, 8, 8), np.float32)
    img = np.full((80, 80, 3), 128, np.uint8)
    dets = Detections(np.array([[10, 20, 50, 60]], np.float32), np.array([0.9], np.float32), np.array([0]), ("obj",))
    geom = Geometry.identity((80, 80))
    single = render_map(reduce_channels(f, "squeeze_mean"), (8, 8), geom, img, RenderOptions(alpha=0.0), dets)
    assert (single[40, 10] == (0, 255, 0)).all() and (single[59, 30] == (0, 255, 0)).all()
    assert (single[40, 30] == 128).all()  # inside the box: untouched image (alpha=0)
    # with resize_shape the box is scaled with the image
    opts = RenderOptions(alpha=0.0, resize_shape=(40, 160))
    resized = render_map(reduce_channels(f, "squeeze_mean"), (8, 8), geom, img, opts, dets)
    assert resized.shape == (40, 160, 3) and (resized[20, 20] == (0, 255, 0)).all()
    grid = render_map(reduce_channels(f, "none", topk=1), (8, 8), geom, img, RenderOptions(alpha=0.0), dets)
    assert not (grid == (0, 255, 0)).all(axis=2).any()


def test_overlapping_boxes_show_the_best_label_on_top():
    img = np.full((80, 80, 3), 128, np.uint8)
    boxes = np.array([[10, 30, 60, 70], [10, 30, 60, 70]], np.float32)
    labels = np.array([0, 1])
    best_first = Detections(boxes, np.array([0.9, 0.3], np.float32), labels, ("circle", "sq"))
    best_last = Detections(boxes[::-1], np.array([0.3, 0.9], np.float32), labels[::-1], ("circle", "sq"))
    only_best = Detections(boxes[:1], np.array([0.9], np.float32), labels[:1], ("circle", "sq"))
    a, b = draw_detections(img, best_first), draw_detections(img, best_last)
    np.testing.assert_array_equal(a, b)  # the input order does not matter
    np.testing.assert_array_equal(a[15:30], draw_detections(img, only_best)[15:30])  # the label reads "circle 0.90"
