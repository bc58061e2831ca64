"""Crops and affines: a classifier's short-edge resize + centre crop and a pose model's top-down warp, laid back on
the original image, checked against positions computed by hand."""

import math

import numpy as np
import pytest

from featvis_run.drawing.render import RenderOptions, render_map
from featvis_run.maps.cam import fuse_cams
from featvis_run.maps.geometry import (
    Geometry,
    _warp_to_canvas,
    cell_at,
    crop_valid,
    unseen_region,
    upsample_to_canvas,
    valid_cells,
)
from featvis_run.maps.reduce import ReducedMap

# a 640 x 480 (W x H) photo, short edge resized to 256: 256 x int(256 * 640 / 480) = 256 x 341; centre crop 224:
# top = round((256 - 224) / 2) = 16, left = round((341 - 224) / 2) = round(58.5) = 58 (mmcv's rounding, to even)
CROP = Geometry(ori_hw=(480, 640), img_hw=(256, 341), input_hw=(224, 224), offset_hw=(-16, -58))
FY, FX = 480 / 256, 640 / 341  # original pixels per resized pixel


def crop_cell_box(i: int, j: int) -> tuple[float, float, float, float]:
    """By hand: cell (i, j) of a 7 x 7 map (stride 32) covers input [32 i, 32 i + 32) x [32 j, 32 j + 32), i.e.
    resized [32 i + 16, ...) x [32 j + 58, ...), i.e. original rows and columns times 480/256 and 640/341."""
    return (32 * i + 16) * FY, (32 * i + 48) * FY, (32 * j + 58) * FX, (32 * j + 90) * FX


@pytest.mark.parametrize(("i", "j"), [(0, 0), (3, 3), (6, 6), (0, 6), (5, 1), (2, 4)])
def test_each_cell_of_a_centre_crop_covers_the_original_pixels_computed_by_hand(i, j):
    assert valid_cells((7, 7), CROP) == (7, 7)  # the crop is all image: every cell is valid
    y0, y1, x0, x1 = crop_cell_box(i, j)
    eps = 1e-3
    assert cell_at((7, 7), CROP, x0 + eps, y0 + eps) == (i, j)
    assert cell_at((7, 7), CROP, x1 - eps, y1 - eps) == (i, j)
    assert cell_at((7, 7), CROP, (x0 + x1) / 2, (y0 + y1) / 2) == (i, j)
    before = cell_at((7, 7), CROP, x0 - eps, y0 - eps)
    assert before == ((i - 1, j - 1) if i and j else None if i == 0 or j == 0 else before)
    # the first cell starts at original (30, 108.86): pixels above/left of it were cropped away
    assert crop_cell_box(0, 0)[0] == pytest.approx(30.0) and crop_cell_box(0, 0)[2] == pytest.approx(108.856, 1e-4)
    hot = np.zeros((7, 7), np.float32)
    hot[i, j] = 1.0
    up = upsample_to_canvas(crop_valid(hot, CROP), (7, 7), CROP, (480, 640))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2  # the cell's centre: the map's value there is the cell's
    assert up[int(cy), int(cx)] >= 0.95
    if 0 < i < 6 and 0 < j < 6:  # (a border cell's value extends to the crop's edge: a plateau)
        y, x = np.unravel_index(np.nanargmax(up), up.shape)
        # the peak is the cell's centre (pixel centres at index + 0.5); within 2 px (cv2 warps at 1/32 cell steps)
        assert abs(y + 0.5 - cy) <= 2 and abs(x + 0.5 - cx) <= 2


def test_outside_a_centre_crop_there_is_no_map():
    unseen = unseen_region((7, 7), CROP, (480, 640))
    # by hand: seen rows [30, 450) and columns [108.86, 529.27) (pixel centres at index + 0.5)
    rows, cols = np.where(~unseen.all(axis=1))[0], np.where(~unseen.all(axis=0))[0]
    assert unseen[:30].all() and unseen[450:].all() and unseen[:, :108].all() and unseen[:, 529:].all()
    assert not unseen[30:450, 109:529].any()
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (30, 449, 109, 528)
    up = upsample_to_canvas(np.ones((7, 7), np.float32), (7, 7), CROP, (480, 640))
    assert np.isnan(up[unseen]).all() and np.all(up[~unseen] == 1.0)
    # drawn on a photo: the bare photo outside the crop, a blended map inside
    photo = np.full((480, 640, 3), 200, np.uint8)
    ramp = np.arange(49, dtype=np.float32).reshape(1, 7, 7)
    picture = render_map(ReducedMap(ramp, "single", (0,)), (7, 7), CROP, photo, RenderOptions())
    assert (picture[unseen] == 200).all()
    assert (picture[~unseen] != 200).any(axis=1).mean() > 0.9


def test_a_crop_drawn_at_another_canvas_size_keeps_its_region():
    unseen = unseen_region((7, 7), CROP, (240, 320))  # half size: seen rows [15, 225), columns [54.4, 264.6)
    assert unseen[:15].all() and not unseen[15:225, 55:264].any() and unseen[225:].all() and unseen[:, 265:].all()


def test_the_warp_path_agrees_with_the_resize_path_on_a_padded_image():
    geom = Geometry(ori_hw=(240, 400), img_hw=(192, 320), input_hw=(224, 320))
    rng = np.random.default_rng(0)
    feat = rng.random((28, 40)).astype(np.float32)
    cropped = crop_valid(feat, geom)
    resized = upsample_to_canvas(cropped, (28, 40), geom, (240, 400))
    warped = _warp_to_canvas(cropped, (28, 40), geom, (240, 400))
    assert unseen_region((28, 40), geom, (240, 400)) is None and not np.isnan(warped).any()
    assert np.abs(resized - warped).max() < 0.05  # same sampling rule; cv2 quantizes warps to 1/32 cell


def rotation_affine(theta_deg: float, scale: float, src: tuple[float, float], dst: tuple[float, float]):
    """x_in = s R (x - src) + dst: rotate by theta, scale, and move ``src`` (original) onto ``dst`` (input)."""
    c, s = math.cos(math.radians(theta_deg)) * scale, math.sin(math.radians(theta_deg)) * scale
    tx = dst[0] - (c * src[0] - s * src[1])
    ty = dst[1] - (s * src[0] + c * src[1])
    return ((c, -s, tx), (s, c, ty))


POSE = Geometry((400, 600), (256, 192), (256, 192), affine=rotation_affine(30, 0.5, (300, 200), (96, 128)))


def test_an_affine_maps_a_known_point_and_its_heatmap_peak_lands_on_the_original_pixel():
    x_in, y_in, _ = POSE.to_input() @ np.array([300.0, 200.0, 1.0])
    assert (x_in, y_in) == pytest.approx((96.0, 128.0))
    # a 64 x 48 heatmap (stride 4) peaking at cell (row 32, col 24): its centre is input (98, 130) = (96, 128) +
    # (2, 2); back in the original: R(-30) (2, 2) / 0.5 = (2 cos + 2 sin, -2 sin + 2 cos) / 0.5 = (5.464, 1.464)
    want_x, want_y = 300 + 2 * (2 * math.cos(math.pi / 6) + 2 * 0.5), 200 + 2 * (-2 * 0.5 + 2 * math.cos(math.pi / 6))
    assert cell_at((64, 48), POSE, want_x, want_y) == (32, 24)
    heat = np.zeros((64, 48), np.float32)
    heat[32, 24] = 1.0
    up = upsample_to_canvas(heat, (64, 48), POSE, (400, 600))
    y, x = np.unravel_index(np.nanargmax(up), up.shape)
    half_stride = 4 / 0.5 / 2  # 4 input pixels per cell, 0.5 input pixels per original pixel
    assert math.hypot(x + 0.5 - want_x, y + 0.5 - want_y) <= half_stride


def test_outside_the_warped_box_there_is_no_map():
    unseen = unseen_region((64, 48), POSE, (400, 600))
    # the box is 192 x 256 input pixels = 384 x 512 original pixels around (300, 200), rotated: its centre is seen,
    # the image corners are not, and the seen area is the box's (384 * 512) clipped to the 400 x 600 image
    assert not unseen[200, 300] and unseen[0, 0] and unseen[399, 599] and unseen[0, 599] and unseen[399, 0]
    assert cell_at((64, 48), POSE, 1.0, 1.0) is None
    up = upsample_to_canvas(np.ones((64, 48), np.float32), (64, 48), POSE, (400, 600))
    assert np.isnan(up[unseen]).all() and np.all(up[~unseen] == 1.0)


def test_fused_cams_of_a_centre_crop_cover_the_whole_input():
    fused = fuse_cams([np.ones((7, 7), np.float32), np.ones((14, 14), np.float32)], CROP)
    assert fused.shape == (1, 224, 224) and np.allclose(fused, 1.0)
