"""Aligning maps of a resized, padded network input with the original image."""

import numpy as np
import pytest

from featvis_run.maps.geometry import Geometry, crop_valid, feature_stride, upsample_to_canvas, valid_cells


@pytest.mark.parametrize(
    ("size", "cells", "stride"),
    [(320, 40, 8.0), (192, 3, 64.0), (192, 2, 128.0), (800, 7, 128.0), (224, 14, 16.0), (100, 3, 100 / 3)],
)
def test_feature_stride(size, cells, stride):
    assert feature_stride(size, cells) == pytest.approx(stride)


def test_valid_cells_exclude_padding():
    # 240 x 400 image resized by 0.8 to 192 x 320, padded to 224 x 320 (e.g. batched with a taller image)
    geom = Geometry(ori_hw=(240, 400), img_hw=(192, 320), input_hw=(224, 320))
    assert valid_cells((28, 40), geom) == (24, 40)  # stride 8
    assert valid_cells((4, 5), geom) == (3, 5)  # stride 64: ceil(192 / 64) = 3
    feat = np.zeros((2, 28, 40), np.float32)
    assert crop_valid(feat, geom).shape == (2, 24, 40)


@pytest.mark.parametrize(("r", "c"), [(0, 0), (5, 17), (23, 39), (12, 3)])
def test_upsampled_hot_cell_lands_on_its_image_location(r, c):
    geom = Geometry(ori_hw=(240, 400), img_hw=(192, 320), input_hw=(224, 320))
    feat = np.zeros((28, 40), np.float32)
    feat[r, c] = 1.0
    cropped = feat[:24, :40]
    up = upsample_to_canvas(cropped, (28, 40), geom, (240, 400))
    assert up.shape == (240, 400)
    y, x = np.unravel_index(np.argmax(up), up.shape)
    # cell centre in input pixels is (i + 0.5) * 8; in original pixels divide by the 0.8 resize factor
    assert abs(y - (r + 0.5) * 8 / 0.8) <= 5.5 and abs(x - (c + 0.5) * 8 / 0.8) <= 5.5


def test_upsample_to_resized_canvas_scales_positions():
    geom = Geometry(ori_hw=(100, 200), img_hw=(100, 200), input_hw=(128, 224))
    feat = np.zeros((16, 28), np.float32)
    feat[6, 20] = 1.0
    cropped = feat[: valid_cells((16, 28), geom)[0], : valid_cells((16, 28), geom)[1]]
    up = upsample_to_canvas(cropped, (16, 28), geom, (50, 400))  # half height, double width
    y, x = np.unravel_index(np.argmax(up), up.shape)
    assert abs(y - 52 / 2) <= 3 and abs(x - 164 * 2) <= 6


def test_valid_cells_round_up_partly_covered_cells():
    # 100 image rows at stride 8 cover rows 0..12 (12.5 cells: the 13th is partly image), not 12
    geom = Geometry(ori_hw=(100, 100), img_hw=(100, 100), input_hw=(128, 128))
    assert valid_cells((16, 16), geom) == (13, 13)
    assert valid_cells((4, 4), geom) == (4, 4)  # stride 32: ceil(100 / 32) = 4


@pytest.mark.parametrize(("r", "c"), [(1, 2), (20, 30), (28, 38)])
def test_a_centred_image_is_cropped_and_aligned_from_its_offset(r, c):
    # CenterNet-style: a 240 x 320 image at scale 1, centred in a 256 x 352 input at (top 8, left 16); stride 8
    geom = Geometry(ori_hw=(240, 320), img_hw=(240, 320), input_hw=(256, 352), offset_hw=(8, 16))
    assert valid_cells((32, 44), geom) == (30, 40)  # rows 1..30 (pixels 8..247), columns 2..41 (16..335)
    feat = np.zeros((32, 44), np.float32)
    feat[r, c] = 1.0
    cropped = crop_valid(feat, geom)
    assert cropped.shape == (30, 40) and cropped[r - 1, c - 2] == 1.0
    up = upsample_to_canvas(cropped, (32, 44), geom, (240, 320))
    assert up.shape == (240, 320)
    y, x = np.unravel_index(np.argmax(up), up.shape)
    # the cell's centre in input pixels, minus the offset, is its place on the image
    assert abs(y - ((r + 0.5) * 8 - 8)) <= 4.5 and abs(x - ((c + 0.5) * 8 - 16)) <= 4.5


def test_an_offset_that_is_no_multiple_of_the_stride_keeps_the_partly_covered_first_cell():
    # a 100 x 100 image centred at (12, 20) in a 128 x 144 input, stride 8: image pixels 12..111 and 20..119
    geom = Geometry(ori_hw=(100, 100), img_hw=(100, 100), input_hw=(128, 144), offset_hw=(12, 20))
    # by hand: rows 12 // 8 = 1 .. ceil(112 / 8) = 14 (13 cells); columns 20 // 8 = 2 .. ceil(120 / 8) = 15 (13 cells)
    assert valid_cells((16, 18), geom) == (13, 13)
    feat = np.arange(16 * 18, dtype=np.float32).reshape(16, 18)
    np.testing.assert_array_equal(crop_valid(feat, geom), feat[1:14, 2:15])
    hot = np.zeros((16, 18), np.float32)
    hot[6, 9] = 1.0  # input pixels 48..55 x 72..79, centre (52, 76): image pixel (40, 56)
    up = upsample_to_canvas(crop_valid(hot, geom), (16, 18), geom, (100, 100))
    y, x = np.unravel_index(np.argmax(up), up.shape)
    assert abs(y - 40) <= 1.5 and abs(x - 56) <= 1.5
