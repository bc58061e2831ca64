"""Stride naming and token grids, the pure functions without torch (quick to import, so the mutation check's first
run for ``maps/strides.py`` and ``maps/tokens.py`` takes seconds). Expected values are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from featvis_run.maps.strides import level_exponent, stride_names
from featvis_run.maps.tokens import GridError, infer_token_grid, split_token_levels, tokens_to_maps


@pytest.mark.parametrize(
    ("input_hw", "map_hw", "k"),
    [
        ((100, 100), (1, 1), 7),  # the whole input, no power of two: log2 100 = 6.64 rounds to 7, not down to 6
        ((300, 300), (10, 10), 5),  # SSD-like 30 px cells: 32 gives ceil(300 / 32) = 10 -> 5
        ((100, 640), (1, 20), 5),  # a wide strip: 640 / 20 = 32 along the axis with more cells, not 100 / 1
        ((640, 100), (20, 1), 5),  # the same, tall
    ],
)
def test_level_exponent_by_hand(input_hw, map_hw, k):
    assert level_exponent(input_hw, map_hw) == k


def test_stride_names_fine_to_coarse_with_numbered_ties_in_model_order():
    # returned coarse first, with two stride-16 maps: names by stride, fine first; ties keep the model's order
    named = stride_names("p", (256, 256), [(8, 8), (16, 16), (32, 32), (16, 16)])
    assert named == [(2, "p3"), (1, "p4"), (3, "p4_2"), (0, "p5")]


def test_split_token_levels_reads_each_level_from_its_own_offset():
    shapes = [(2, 3), (1, 2), (1, 1)]  # 6 + 2 + 1 tokens, concatenated in order
    tokens = np.arange(9 * 2, dtype=np.float32).reshape(1, 9, 2)  # token t has channels (2t, 2t + 1)
    maps = split_token_levels(tokens, shapes)
    assert [m.shape for m in maps] == [(1, 2, 2, 3), (1, 2, 1, 2), (1, 2, 1, 1)]
    assert maps[0][0, 0].tolist() == [[0, 2, 4], [6, 8, 10]]  # tokens 0-5, row-major
    assert maps[1][0, :, 0, :].tolist() == [[12, 14], [13, 15]]  # tokens 6, 7
    assert maps[2][0, :, 0, 0].tolist() == [16, 17]  # token 8
    with pytest.raises(GridError, match="9 tokens but the level shapes"):
        split_token_levels(tokens, [(2, 3), (1, 2)])


def test_tokens_on_a_non_square_grid_after_a_class_token():
    b, h, w, c = 1, 2, 3, 1
    tokens = np.arange(1 + h * w, dtype=np.float32).reshape(b, 1 + h * w, c)  # token 0 is the class token
    assert tokens_to_maps(tokens, (h, w), extra_tokens=1)[0, 0].tolist() == [[1, 2, 3], [4, 5, 6]]


def test_a_power_of_two_stride_wins_when_several_fit():
    assert infer_token_grid(64, (64, 64)) == (8, 8)  # only stride 8 gives 8 x 8
    # 4 tokens on 48 x 48: every stride from 24 to 47 gives 2 x 2; 32 is the only power of two among them
    assert infer_token_grid(4, (48, 48)) == (2, 2)
