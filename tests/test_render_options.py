"""What the README promises about drawing: RGB ``topk=-1``, other colormaps, signed diff colours, unlabelled tiles,
boxes on a resized canvas. Expected colours come from OpenCV's own colormaps or the README's stops, by hand."""

from __future__ import annotations

import cv2
import numpy as np

from featvis_run.drawing.render import RenderOptions, render_map
from featvis_run.maps.geometry import Geometry
from featvis_run.maps.reduce import reduce_channels
from featvis_run.predictions import Detections

BARE = RenderOptions(overlaid=False, min_size=0)


def test_a_three_channel_map_with_topk_minus_one_is_drawn_as_rgb():
    feat = np.zeros((3, 4, 4), np.float32)
    feat[0, :, :2] = 1.0  # red on the left
    feat[1, :, 2:] = 1.0  # green on the right
    feat[2, 0, :] = 1.0  # blue on the top row
    reduced = reduce_channels(feat, "none", -1)
    picture = render_map(reduced, (4, 4), Geometry.identity((4, 4)), None, BARE)
    assert picture.shape == (4, 4, 3)
    # BGR: blue and red channels swapped back for OpenCV
    assert tuple(picture[2, 0]) == (0, 0, 255) and tuple(picture[2, 3]) == (0, 255, 0)
    assert tuple(picture[0, 0]) == (255, 0, 255) and tuple(picture[0, 3]) == (255, 255, 0)


def test_another_colormap_is_opencvs():
    ramp = np.arange(256, dtype=np.float32).reshape(16, 16)  # min-max scaling leaves 0..255 as it is
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    for name, code in (("viridis", cv2.COLORMAP_VIRIDIS), ("jet", cv2.COLORMAP_JET), ("hot", cv2.COLORMAP_HOT)):
        reduced = reduce_channels(ramp[None], "squeeze_mean")
        picture = render_map(
            reduced,
            (16, 16),
            Geometry.identity((16, 16)),
            None,
            RenderOptions(overlaid=False, colormap=name, min_size=0),
        )
        np.testing.assert_array_equal(picture, cv2.applyColorMap(u8, code), err_msg=name)


def test_signed_maps_are_blue_below_zero_white_at_zero_red_above():
    diff = np.array([[-2.0, 0.0, 2.0, 1.0]], np.float32)
    reduced = reduce_channels(diff[None], "squeeze_mean")
    picture = render_map(
        reduced, (1, 4), Geometry.identity((1, 4)), None, RenderOptions(overlaid=False, min_size=0, signed=True)
    )
    # the stops (RGB): blue (59, 76, 192) at -max|d|, grey-white (221, 221, 221) at 0, red (180, 4, 38) at +max|d|
    assert tuple(picture[0, 0]) == (192, 76, 59)
    assert np.abs(picture[0, 1].astype(int) - 221).max() <= 2
    assert tuple(picture[0, 2]) == (38, 4, 180)
    b, g, r = (int(v) for v in picture[0, 3])  # +1: halfway from white to red
    assert abs(r - (221 + 180) / 2) <= 3 and abs(b - (221 + 38) / 2) <= 3 and abs(g - (221 + 4) / 2) <= 3


def test_layout_label_false_leaves_tiles_unlabelled():
    rng = np.random.default_rng(0)
    feat = rng.random((4, 8, 8)).astype(np.float32)
    reduced = reduce_channels(feat, "none", 4)
    geom = Geometry.identity((8, 8))
    opts = RenderOptions(overlaid=False, min_tile=64, arrangement=(2, 2))
    labelled = render_map(reduced, (8, 8), geom, None, opts)
    bare = render_map(reduced, (8, 8), geom, None, RenderOptions(**{**opts.__dict__, "label": False}))
    assert tuple(labelled[1, 1]) == (0, 0, 0)  # the black label box in the first tile's corner
    # unlabelled: every tile is exactly its channel's heatmap, magnified 8x (nearest)
    first = cv2.resize(
        cv2.applyColorMap(_u8(feat[reduced.channels[0]]), cv2.COLORMAP_JET), (64, 64), interpolation=cv2.INTER_NEAREST
    )
    np.testing.assert_array_equal(bare[:64, :64], first)


def _u8(x: np.ndarray) -> np.ndarray:
    return ((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)


def test_boxes_land_on_their_place_on_a_resized_canvas():
    image = np.zeros((100, 200, 3), np.uint8)
    feat = np.zeros((1, 10, 20), np.float32)
    feat[0, 0, 0] = 1.0
    reduced = reduce_channels(feat, "squeeze_mean")
    dets = Detections(np.array([[20, 60, 60, 80]], np.float32), np.array([0.9], np.float32), np.array([0]), ("a",))
    opts = RenderOptions(resize_shape=(50, 400))  # half height, double width
    geom = Geometry.identity((100, 200))
    picture = render_map(reduced, (10, 20), geom, image, opts, dets)
    assert picture.shape == (50, 400, 3)
    green = np.all(picture == (0, 255, 0), axis=-1)
    # the box in canvas pixels: x 40..120, y 30..40; its bottom edge and right edge are green
    assert green[40, 80] and green[35, 120]
    assert not green[80 // 2, 20:30].any()  # nothing at the unscaled place of the left edge's bottom (x=20)


def test_overlays_blend_one_minus_alpha_image_with_alpha_heatmap():
    image = np.full((2, 2, 3), 200, np.uint8)
    ramp = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)  # min-max: 0, 85, 170, 255
    reduced = reduce_channels(ramp[None], "squeeze_mean")
    picture = render_map(reduced, (2, 2), Geometry.identity((2, 2)), image, RenderOptions(alpha=0.3))
    heat = cv2.applyColorMap(np.array([[0, 85], [170, 255]], np.uint8), cv2.COLORMAP_JET).astype(np.float64)
    want = np.round(0.7 * 200 + 0.3 * heat)
    assert np.abs(picture.astype(np.float64) - want).max() <= 1


def test_grid_tiles_go_row_major():
    from featvis_run.drawing.layout import tile_grid

    tiles = [np.full((4, 4, 3), i * 40, np.uint8) for i in range(5)]
    grid = tile_grid(tiles, [], rows=2, cols=3, gap=1)
    assert grid.shape == (9, 14, 3)
    corners = {(r, c): int(grid[r * 5, c * 5, 0]) for r in range(2) for c in range(3)}
    assert corners == {(0, 0): 0, (0, 1): 40, (0, 2): 80, (1, 0): 120, (1, 1): 160, (1, 2): 255}  # last cell empty
