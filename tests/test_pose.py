"""Pose models without building one: the top-down warp laid back on the image (a planted heatmap peak lands on its
keypoint), keypoints and skeleton drawn, keypoint-named heatmap grids, person boxes, the manifest and cache records,
and the one-line refusals (heads without maps, bottom-up models, boxes for other libraries)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from featvis_run.drawing.keypoints import KEYPOINT_COLOUR, SKELETON_COLOUR, draw_keypoints
from featvis_run.drawing.render import RenderOptions, render_map
from featvis_run.errors import ModelError, RecordingError
from featvis_run.experiments.draw import keypoint_channel_names
from featvis_run.experiments.inputs import per_box
from featvis_run.maps.geometry import Geometry, cell_at, upsample_to_canvas
from featvis_run.maps.reduce import ReducedMap
from featvis_run.models.base import ImageFeatures, ModelPlan
from featvis_run.models.mmpose import MmposeAdapter, check_boxes, pixel_centre_affine, widen_stages
from featvis_run.predictions import Keypoints
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import ModelConfig, RecorderSpec
from featvis_run.store.cache import decode_features, encode_features
from featvis_run.store.images import InputImage

# A person box (x1, y1, x2, y2) = (100, 50, 300, 400) of a 480 x 640 photo, as mmpose's top-down pipeline warps it
# onto a 128 x 96 (H x W) input: padded x1.25 -> 250 x 437.5 (W x H), widened to the input's 3:4 -> 328.125 x
# 437.5, centred on (200, 225). OpenCV's warp (pixel index -> pixel index): x_in = k (x - 200) + 48,
# y_in = k (y - 225) + 64 with k = 96 / 328.125.
K = 96 / 328.125
WARP = np.array([[K, 0.0, 48 - 200 * K], [0.0, K, 64 - 225 * K]])
POSE = Geometry((480, 640), (128, 96), (128, 96), (0, 0), pixel_centre_affine(WARP))
STRIDE = 4  # 32 x 24 heatmaps


def to_original(x_in: float, y_in: float) -> tuple[float, float]:
    """By hand, continuous coordinates (pixel i spans [i, i + 1)): input index = continuous - 0.5, so
    x = (x_in - 0.5 - 48) / k + 200 + 0.5, and likewise for y."""
    return (x_in - 0.5 - 48) / K + 200.5, (y_in - 0.5 - 64) / K + 225.5


def test_the_geometry_affine_is_the_warp_in_pixel_centre_coordinates():
    a = np.asarray(POSE.affine)
    assert a[0, 0] == pytest.approx(K) and a[1, 1] == pytest.approx(K) and a[0, 1] == a[1, 0] == 0
    # original pixel (100, 50) (index) lands on input index k * (100 - 200) + 48; centres: both + 0.5
    x_in, y_in, _ = POSE.to_input() @ np.array([100.5, 50.5, 1.0])
    assert x_in == pytest.approx(K * (100 - 200) + 48 + 0.5) and y_in == pytest.approx(K * (50 - 225) + 64 + 0.5)


@pytest.mark.parametrize(("row", "col"), [(5, 3), (16, 12), (27, 20), (2, 21)])
def test_a_planted_heatmap_peak_is_drawn_on_its_keypoint(row, col):
    heat = np.zeros((32, 24), np.float32)
    heat[row, col] = 1.0
    up = upsample_to_canvas(heat, (32, 24), POSE, (480, 640))
    y, x = np.unravel_index(np.nanargmax(up), up.shape)
    # the cell's centre in the input: ((col + 0.5) * 4, (row + 0.5) * 4), back through the warp by hand
    kx, ky = to_original((col + 0.5) * STRIDE, (row + 0.5) * STRIDE)
    half_cell = STRIDE / K / 2  # half a heatmap stride in original pixels (6.8 px)
    assert abs(x + 0.5 - kx) <= half_cell and abs(y + 0.5 - ky) <= half_cell
    assert cell_at((32, 24), POSE, kx, ky) == (row, col)
    # outside the warped box (the input's edges at original x = 200.5 -/+ 48 / k) the network saw nothing: no map
    left, right = to_original(0, 0)[0], to_original(96, 0)[0]
    assert np.isnan(up[240, int(left) - 2]) and np.isnan(up[240, int(right) + 2])
    assert np.isfinite(up[240, int(left) + 2]) and np.isfinite(up[240, int(right) - 2])


def test_keypoints_and_their_limbs_are_drawn_and_low_scores_are_left_out():
    img = np.zeros((100, 200, 3), np.uint8)
    points = np.array([[20, 30], [120, 30], [120, 80]], np.float32)
    kps = Keypoints(points, np.array([0.9, 0.8, 0.1], np.float32), ("a", "b", "c"), ((0, 1), (1, 2)))
    out = draw_keypoints(img, kps.above(0.3), (1.0, 1.0))
    assert tuple(out[30, 20]) == KEYPOINT_COLOUR and tuple(out[30, 120]) == KEYPOINT_COLOUR
    b, g, r = (int(v) for v in out[30, 70])  # the limb a-b, halfway (anti-aliased green)
    assert g > 100 and b == r == 0 and SKELETON_COLOUR == (0, 200, 0)
    assert not out[80, 120].any() and not out[55, 120].any()  # c scored 0.1 < 0.3: neither it nor b-c is drawn
    # on a canvas drawn at half size, the point moves with it
    half = draw_keypoints(np.zeros((50, 100, 3), np.uint8), kps.above(0.3), (0.5, 0.5))
    assert tuple(half[15, 60]) == KEYPOINT_COLOUR


def test_the_manifest_record_keeps_every_keypoint_and_counts_those_drawn():
    kps = Keypoints(np.array([[1.5, 2.0], [np.nan, 3.0]], np.float32), np.array([0.5, 0.9], np.float32), ("x", "y"))
    assert kps.record() == {
        "keypoints": [[1.5, 2.0, 0.5], [None, 3.0, pytest.approx(0.9)]],
        "names": ["x", "y"],
        "skeleton": [],
    }
    assert kps.summary(0.3) == {"keypoints_drawn": 1}  # the NaN one is not drawn
    assert kps.summary(0.6) == {"keypoints_drawn": 0}


def test_heatmap_grid_tiles_are_named_by_keypoint():
    kps = Keypoints(np.zeros((3, 2), np.float32), np.ones(3, np.float32), ("nose", "left_eye", "right_eye"))
    assert keypoint_channel_names(LevelKey("head", "heatmaps"), 3, kps) == ("nose", "left_eye", "right_eye")
    assert keypoint_channel_names(LevelKey("backbone", "c2"), 3, kps) is None
    assert keypoint_channel_names(LevelKey("head", "heatmaps"), 4, kps) is None
    maps = np.zeros((2, 8, 8), np.float32)
    maps[:, 2:6, 2:6] = 1.0
    grid = ReducedMap(maps, (0, 1), "none", "grid")
    opts = RenderOptions(arrangement=(1, 2), min_tile=64)
    named = render_map(
        grid,
        (8, 8),
        Geometry.identity((8, 8)),
        None,
        RenderOptions(**{**opts.__dict__, "channel_names": kps.class_names}),
    )
    plain = render_map(grid, (8, 8), Geometry.identity((8, 8)), None, opts)
    assert named.shape == plain.shape and (named != plain).any()  # "1 left_eye" is written, not "ch 1"


def test_each_box_is_its_own_picture_set_with_its_own_cache_entry():
    image = InputImage("street", __file__, np.zeros((4, 4, 3), np.uint8), "abc")
    boxes = per_box(image, [[0, 0, 2, 2], [1, 1, 4, 3]])
    assert [b.image_id for b in boxes] == ["street_box0", "street_box1"]
    assert [b.box for b in boxes] == [(0.0, 0.0, 2.0, 2.0), (1.0, 1.0, 4.0, 3.0)]
    assert per_box(image, None) == [image]


@pytest.mark.parametrize("boxes", [[], [[0, 0, 10]], [[10, 0, 5, 20]], [[0, 5, 10, 5]], [["a", 0, 1, 1]]])
def test_a_bad_box_is_one_line_naming_it(boxes):
    with pytest.raises(ModelError, match=r"model\.bboxes"):
        check_boxes(boxes)


def test_boxes_for_a_detector_are_refused():
    from featvis_run.models.mmdet import MmdetAdapter

    mc = ModelConfig(name="r", mmdet_config="retinanet/retinanet_r50_fpn_1x_coco.py", bboxes=[[0, 0, 1, 1]])
    with pytest.raises(ModelError, match=r"model\.bboxes=.*top-down pose models.*drop model\.bboxes"):
        MmdetAdapter().plan(mc)


def _plan(head: str) -> ModelPlan:
    cfg = SimpleNamespace(model={"type": "TopdownPoseEstimator", "head": {"type": head}})
    return ModelPlan(ModelConfig(name="rtm", repo="mmpose"), "mmpose", cfg, None, None, None, "id")


def test_recorder_head_is_refused_for_a_head_without_maps_but_the_backbone_is_not():
    head = {"head": RecorderSpec(source="head.forward")}
    with pytest.raises(RecordingError, match=r"RTMCCHead outputs .*not maps.*use recorder=backbone"):
        MmposeAdapter().check_recorders(_plan("RTMCCHead"), head)
    MmposeAdapter().check_recorders(_plan("RTMCCHead"), {"backbone": RecorderSpec(source="backbone")})
    MmposeAdapter().check_recorders(_plan("HeatmapHead"), head)


def test_a_bottom_up_model_is_refused_in_one_line():
    cfg = SimpleNamespace(model={"type": "BottomupPoseEstimator"}, filename="dekr.py")
    with pytest.raises(ModelError, match=r"BottomupPoseEstimator, not a top-down pose model"):
        MmposeAdapter().adjust_config(cfg)


def test_a_resnet_outputting_its_last_stage_outputs_every_stage():
    model = {"backbone": {"type": "ResNet", "depth": 50, "out_indices": (3,)}}
    assert widen_stages(model) and model["backbone"]["out_indices"] == (0, 1, 2, 3)
    kept = {"backbone": {"type": "ResNet", "out_indices": (1, 3)}}
    assert widen_stages(kept) == [] and kept["backbone"]["out_indices"] == (1, 3)
    csp = {"backbone": {"type": "CSPNeXt", "out_indices": (4,)}}
    assert widen_stages(csp) and csp["backbone"]["out_indices"] == (1, 2, 3, 4)


def test_keypoints_and_the_warp_survive_the_activation_cache():
    kps = Keypoints(
        np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), np.array([0.5, 0.25], np.float32), ("a", "b"), ((0, 1),)
    )
    item = ImageFeatures(POSE, kps, {LevelKey("head", "heatmaps"): np.ones((2, 32, 24), np.float32)})
    path = __import__("pathlib").Path(pytest.importorskip("tempfile").mkdtemp()) / "entry.npz"
    path.write_bytes(encode_features(item))
    back = decode_features(path)
    assert isinstance(back.predictions, Keypoints) and back.predictions.skeleton == ((0, 1),)
    np.testing.assert_array_equal(back.predictions.points, kps.points)
    assert back.predictions.class_names == ("a", "b")
    np.testing.assert_allclose(np.asarray(back.geometry.affine), np.asarray(POSE.affine), rtol=1e-6)
