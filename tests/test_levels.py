"""Naming levels by stride, laying tokens on their grid, paths into nested outputs, and what extract_levels draws.

Expected values are worked out by hand from the definitions (stride = input / map, k = round(log2 stride))."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featvis_run.errors import RecordingError
from featvis_run.maps.strides import level_exponent, stride_names
from featvis_run.maps.tokens import GridError, infer_token_grid, split_token_levels, tokens_to_maps
from featvis_run.recording.levels import LevelKey, SpatialTokens, extract_levels
from featvis_run.recording.recorder import FeatureRecorder
from featvis_run.recording.select import parse_data_path, select_record
from featvis_run.schema import MappingSpec, RecorderSpec, RecorderType


def rec(source: str, prefix: str | None = None, kind: str = "module_outputs") -> RecorderSpec:
    return RecorderSpec(type=RecorderType(kind), source=source, level_prefix=prefix)


# ---- strides ----


@pytest.mark.parametrize(
    ("input_hw", "map_hw", "k"),
    [
        ((800, 1216), (200, 304), 2),  # stride 4: P2 of Faster R-CNN
        ((800, 1216), (100, 152), 3),
        ((800, 1216), (7, 10), 7),  # along the axis with more cells: 1216 / 10 = 121.6 -> log2 6.93 -> 7
        ((300, 300), (38, 38), 3),  # SSD: 7.89 -> 8
        ((300, 300), (3, 3), 7),  # 100 -> log2 6.64 -> 7
        ((300, 300), (1, 1), 8),  # the whole input: 300 -> 8.23 -> 8
        ((256, 320), (2, 3), 7),  # 320/3 = 106.7 (the axis with more cells) -> 128 gives 3 columns -> 7
        ((128, 160), (1, 2), 7),  # P7 of a small input: 160/2 = 80, but 128 also gives 2 columns -> 7 (not 6)
        ((320, 320), (2, 2), 8),  # SSDLite's fifth level: 160 -> 256 gives 2 -> 8
        ((240, 320), (8, 10), 5),  # DETR's C5 on an unpadded input: 30 x 32 pixels per cell -> 32
    ],
)
def test_level_exponent_rounds_log2_of_the_stride(input_hw, map_hw, k):
    assert level_exponent(input_hw, map_hw) == k


def test_stride_names_order_fine_to_coarse_and_number_ties():
    # YOLOv3's neck returns coarse first
    assert stride_names("p", (320, 320), [(10, 10), (20, 20), (40, 40)]) == [(2, "p3"), (1, "p4"), (0, "p5")]
    # a dilated ResNet: three stride-8 stages after a stride-4 one
    named = stride_names("c", (256, 320), [(64, 80), (32, 40), (32, 40), (32, 40)])
    assert named == [(0, "c2"), (1, "c3"), (2, "c3_2"), (3, "c3_3")]


def test_a_strictly_smaller_map_with_the_same_k_is_the_next_level():
    # SSDLite on 320: ... 3x3 (stride ~107 -> 7), 2x2 (ceil(320/256) = 2 -> 8), 1x1 (the whole input, 320 -> 8);
    # the 1x1 map is coarser than the 2x2 one, so it is P9, not a second P8
    hws = [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert [n for _, n in stride_names("p", (320, 320), hws)] == ["p4", "p5", "p6", "p7", "p8", "p9"]
    # SSD300 on 320: the 1x1 after the 3x3 stays P8
    hws = [(40, 40), (20, 20), (10, 10), (5, 5), (3, 3), (1, 1)]
    assert [n for _, n in stride_names("p", (320, 320), hws)] == ["p3", "p4", "p5", "p6", "p7", "p8"]
    # returned coarse first, the same names
    assert stride_names("p", (320, 320), [(1, 1), (2, 2)]) == [(1, "p8"), (0, "p9")]


# ---- tokens ----


def test_infer_token_grid_by_unique_stride_with_extra_tokens():
    assert infer_token_grid(25 * 34, (800, 1088)) == (25, 34)  # Swin stage 4 of an 800x1088 input: stride 32
    assert infer_token_grid(197, (224, 224), extra_tokens=1) == (14, 14)  # ViT-B/16 with a class token
    assert infer_token_grid(13 * 17, (200, 260)) == (13, 17)  # ceil(200/16) x ceil(260/16)
    with pytest.raises(GridError, match="no stride fits"):
        infer_token_grid(1000, (320, 320))


def test_tokens_to_maps_puts_token_i_at_row_i_div_w():
    b, h, w, c = 2, 3, 4, 5
    grid = np.arange(b * h * w * c, dtype=np.float32).reshape(b, h, w, c)
    tokens = np.concatenate([np.full((b, 1, c), -1.0, np.float32), grid.reshape(b, h * w, c)], axis=1)
    maps = tokens_to_maps(tokens, (h, w), extra_tokens=1)
    assert maps.shape == (b, c, h, w)
    assert maps[1, 2, 2, 3] == grid[1, 2, 3, 2]  # channel 2 of the token at row 2, column 3
    with pytest.raises(GridError, match="not 3x5=15 cells"):
        tokens_to_maps(tokens, (3, 5), extra_tokens=1)


def test_split_token_levels_in_order():
    tokens = np.arange(1 * (4 + 1) * 2, dtype=np.float32).reshape(1, 5, 2)
    big, small = split_token_levels(tokens, [(2, 2), (1, 1)])
    assert big.shape == (1, 2, 2, 2) and small.shape == (1, 2, 1, 1)
    assert small[0, :, 0, 0].tolist() == [8.0, 9.0] and big[0, 1, 1, 0] == 5.0  # token 2, channel 1
    with pytest.raises(GridError, match="hold 6"):
        split_token_levels(tokens, [(2, 2), (1, 2)])


# ---- data paths ----


def test_data_paths_reach_nested_tuples_dicts_and_attributes():
    class Out:
        hidden = torch.zeros(1, 2, 3, 3)

    records = {"r": [(torch.zeros(1, 1, 1, 1), ({"memory": torch.ones(1, 4, 2, 2)}, Out()))]}
    assert select_record(records, "m", MappingSpec(recorder="r", data_idx="1.0.memory")).shape == (1, 4, 2, 2)
    assert select_record(records, "m", MappingSpec(recorder="r", data_idx=[1, 1, "hidden"])).shape == (1, 2, 3, 3)
    assert parse_data_path("1.0", "x") == [1, 0] and parse_data_path(-1, "x") == [-1]
    with pytest.raises(RecordingError, match=r"cannot take step 'mem'.*data_idx 1.0 is dict \{memory\}"):
        select_record(records, "m", MappingSpec(recorder="r", data_idx="1.0.mem"))
    with pytest.raises(RecordingError, match=r"out of range at step 2: data_idx 1 is tuple of 2"):
        select_record(records, "m", MappingSpec(recorder="r", data_idx="1.2"))
    with pytest.raises(RecordingError, match=r"data_idx=1.0 was read as a number.*data_idx: '1.0'"):
        select_record(records, "m", MappingSpec(recorder="r", data_idx=1.0))


# ---- extract_levels ----


def test_unmapped_recorder_is_named_by_stride_fine_to_coarse():
    neck = (torch.ones(1, 4, 10, 10), torch.ones(1, 4, 20, 20), torch.ones(1, 4, 40, 40))  # coarse first
    levels = extract_levels({"neck": [neck]}, {"neck": rec("neck", "p")}, {}, batch=1, input_hw=(320, 320))
    assert list(levels) == [LevelKey("neck", "p3"), LevelKey("neck", "p4"), LevelKey("neck", "p5")]
    assert levels[LevelKey("neck", "p3")].shape == (1, 4, 40, 40)


def test_tokens_become_maps_from_a_carried_grid_or_the_stride():
    tokens = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    # a Swin stage returns (x, hw_shape, out, out_hw_shape): the grid comes from the output itself
    stage = (torch.zeros(2, 2, 8), (1, 2), tokens, torch.Size([2, 3]))
    levels = extract_levels({"s": [stage]}, {"s": rec("stage")}, {}, batch=2, input_hw=(64, 96))
    assert list(levels) == [LevelKey("s", "0"), LevelKey("s", "2")]
    out = levels[LevelKey("s", "2")]
    assert out.shape == (2, 3, 2, 3) and out[1, 2, 1, 0] == tokens[1, 3, 2]
    mapped = extract_levels(
        {"s": [stage]}, {"s": rec("stage")}, {"o": MappingSpec(recorder="s", data_idx=2)}, batch=2, input_hw=(64, 96)
    )
    np.testing.assert_array_equal(mapped[LevelKey("s", "o")], out)
    # bare tokens: 6 cells on a 64x96 input fit stride 32 only (2 x 3)
    bare = extract_levels({"b": [tokens]}, {"b": rec("blk")}, {}, batch=2, input_hw=(64, 96))
    np.testing.assert_array_equal(bare[LevelKey("b", "out")], out)


def test_tokens_without_a_fitting_grid_name_the_shape_and_the_options():
    # 33 tokens on a 64x96 input: no stride fits 33 - e cells for any e of 0..8 leading extra tokens
    tokens = torch.zeros(1, 33, 3)
    with pytest.raises(RecordingError, match=r"tokens of shape \(1, 33, 3\).*grid: \[H, W\].*extra_tokens: N"):
        extract_levels({"b": [tokens]}, {"b": rec("blk")}, {}, batch=1, input_hw=(64, 96))
    ok = extract_levels(
        {"b": [tokens]}, {"b": rec("blk")}, {"x": MappingSpec(recorder="b", grid=[4, 8], extra_tokens=1)}, 1, (64, 96)
    )
    assert ok[LevelKey("b", "x")].shape == (1, 3, 4, 8)


def test_leading_class_tokens_are_left_out_of_an_unmapped_grid():
    # 7 tokens on a 64x96 input: no grid of 7 cells, but after 1 class token 6 cells fit stride 32 (2 x 3)
    tokens = torch.arange(7 * 2, dtype=torch.float32).reshape(1, 7, 2)
    out = extract_levels({"b": [tokens]}, {"b": rec("blk")}, {}, batch=1, input_hw=(64, 96))[LevelKey("b", "out")]
    assert out.shape == (1, 2, 2, 3)
    assert out[0, 1, 1, 0] == tokens[0, 1 + 3, 1]  # cell (1, 0) is grid token 3, sequence token 4


def test_encoder_memory_is_split_per_level_and_named_by_stride():
    shapes = ((8, 10), (4, 5))
    memory = torch.randn(1, 80 + 20, 6)
    levels = extract_levels(
        {"enc": [SpatialTokens(memory, shapes)]},
        {"enc": rec("forward_encoder", "p", "encoder_memory")},
        {},
        batch=1,
        input_hw=(64, 80),
    )
    assert list(levels) == [LevelKey("enc", "p3"), LevelKey("enc", "p4")]
    p4 = levels[LevelKey("enc", "p4")]
    assert p4.shape == (1, 6, 4, 5) and p4[0, 5, 3, 4] == pytest.approx(float(memory[0, 80 + 19, 5]))


def test_roi_features_are_refused_with_the_reason():
    with pytest.raises(RecordingError, match=r"\(1000, 256, 7, 7\).*RoI features.*recorder=fpn"):
        extract_levels(
            {"roi": [torch.zeros(1000, 256, 7, 7)]}, {"roi": rec("x")}, {"r": MappingSpec("roi")}, 1, (64, 64)
        )


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.neck = torch.nn.Identity()
        self.head = torch.nn.Conv2d(2, 2, 1)
        self.head_calls = 0

    def forward(self, x):
        feats = self.neck((x, x[:, :, ::2, ::2]))
        self.head_calls += 1
        return self.head(feats[0])


def test_a_bad_data_idx_stops_the_forward_pass_before_the_head():
    net = _Net()
    bad = {"p9": MappingSpec(recorder="neck", data_idx=5)}
    with (
        pytest.raises(RecordingError, match="data_idx=5 is out of range"),
        FeatureRecorder(net, {"neck": rec("neck")}, bad, batch=1),
    ):
        net(torch.zeros(1, 2, 8, 8))
    assert net.head_calls == 0 and not net.neck._forward_hooks  # stopped at the neck; hooks removed
    with FeatureRecorder(net, {"neck": rec("neck")}, {"p": MappingSpec(recorder="neck", data_idx=1)}, 1):
        net(torch.zeros(1, 2, 8, 8))
    assert net.head_calls == 1


def test_a_missing_neck_suggests_the_other_presets():
    with pytest.raises(RecordingError, match=r"records the model's 'neck', but Sequential has none.*recorder=backbone"):
        FeatureRecorder(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)), {"neck": rec("neck", "p")})
