"""Grad-CAM, EigenCAM and the fused map against their definitions; targets and their errors; the config keys."""

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featvis_run.errors import ConfigError, TargetNotFound
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.cam import eigen_cam, fuse_cams, grad_cam
from featvis_run.maps.geometry import Geometry
from featvis_run.maps.reduce import reduce_channels
from featvis_run.maps.targets import parse_target, select_detections
from featvis_run.models.cam_source import _gradients
from featvis_run.predictions import Detections
from featvis_run.schema import register_configs

from .conftest import CONF_DIR

register_configs()


def test_grad_cam_of_a_linear_score_matches_the_hand_computed_map():
    # score = sum(K * A): dscore/dA = K. Channel means of K: w0 = (1 + 3) / 2 = 2, w1 = (-1 + 0) / 2 = -0.5
    acts = torch.tensor([[[1.0, 2.0]], [[3.0, -4.0]]], requires_grad=True)
    k = torch.tensor([[[1.0, 3.0]], [[-1.0, 0.0]]])
    (grads,) = torch.autograd.grad((k * acts).sum(), acts)
    cam = grad_cam(acts.detach().numpy(), grads.numpy())
    # 2 * [1, 2] - 0.5 * [3, -4] = [0.5, 6]; a negative sum is cut by the ReLU
    np.testing.assert_allclose(cam, [[[0.5, 6.0]]])
    flipped = grad_cam(acts.detach().numpy(), -grads.numpy())
    np.testing.assert_allclose(flipped, [[[0.0, 0.0]]])


def test_grad_cam_weights_average_over_the_region_only():
    acts = np.ones((1, 2, 2), np.float32)
    grads = np.array([[[4.0, 0.0], [0.0, 0.0]]], np.float32)  # mean over all 4 cells: 1; over the first row: 2
    np.testing.assert_allclose(grad_cam(acts, grads), np.ones((1, 2, 2)))
    np.testing.assert_allclose(grad_cam(acts, grads, (slice(0, 1), slice(0, 2))), np.full((1, 2, 2), 2.0))


def test_gradients_of_recorded_tensors_follow_the_record_structure():
    a = torch.arange(6.0).reshape(1, 1, 2, 3).requires_grad_(True)
    b = torch.ones(1, 1, 1, 1, requires_grad=True)  # not used by the score: zeros
    k = torch.full((1, 1, 2, 3), 3.0)
    grads = _gradients({"neck": [(a, b)]}, (k * a).sum())
    ga, gb = grads["neck"][0]
    np.testing.assert_array_equal(ga.numpy(), k.numpy())
    np.testing.assert_array_equal(gb.numpy(), np.zeros((1, 1, 1, 1)))


def test_eigen_cam_matches_numpy_svd_of_the_centred_activations():
    rng = np.random.default_rng(3)
    acts = rng.normal(size=(6, 4, 5)).astype(np.float32) + rng.normal(size=(6, 1, 1)).astype(np.float32)
    x = acts.reshape(6, -1).T.astype(np.float64)
    x -= x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    v = vt[0] if vt[0].sum() >= 0 else -vt[0]  # the documented sign: loadings sum >= 0
    expected = (x @ v).reshape(1, 4, 5)
    np.testing.assert_allclose(eigen_cam(acts), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(reduce_channels(acts, "eigencam").maps, expected, rtol=1e-4, atol=1e-5)
    # the sign follows the channel-mean map: a map correlates positively with it
    mean_map = acts.mean(axis=0).ravel()
    assert np.corrcoef(eigen_cam(acts).ravel(), mean_map)[0, 1] > 0


def test_eigen_cam_of_a_rank_one_map_is_its_spatial_pattern():
    pattern = np.array([[0.0, 1.0], [2.0, 5.0]], np.float32)
    acts = np.stack([pattern * s for s in (1.0, 2.0, 3.0)])
    out = eigen_cam(acts)[0]
    centred = pattern - pattern.mean()
    np.testing.assert_allclose(out, centred * np.sqrt(14.0), rtol=1e-5, atol=1e-5)  # |(1, 2, 3)| = sqrt(14)


def test_fuse_cams_averages_max_normalised_levels_on_the_image_and_zeroes_the_padding():
    geom = Geometry(ori_hw=(3, 4), img_hw=(3, 4), input_hw=(4, 4))  # the last input row is padding
    coarse = np.full((2, 2), 5.0, np.float32)  # stride 2: constant, normalised to 1
    fine = np.zeros((4, 4), np.float32)
    fine[1, 2] = 4.0  # stride 1: normalised to 1 at (1, 2)
    silent = np.zeros((1, 1), np.float32)  # a level the score does not reach adds 0
    fused = fuse_cams([coarse, fine, silent], geom)
    expected = np.zeros((1, 4, 4))
    expected[0, :3] = 1.0 / 3
    expected[0, 1, 2] = 2.0 / 3
    np.testing.assert_allclose(fused, expected, atol=1e-6)


def test_gradcam_reducer_draws_one_channel_cams_and_refuses_more():
    cam = np.random.default_rng(0).random((1, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(reduce_channels(cam, "gradcam").maps, cam)
    with pytest.raises(ConfigError, match="1"):
        reduce_channels(np.zeros((4, 3, 3), np.float32), "gradcam")


SCORES = np.array([0.5, 0.9, 0.2, 0.7])
LABELS = np.array([0, 1, 0, 0])
NAMES = ("circle", "square", "triangle")


@pytest.mark.parametrize(
    ("target", "expected"),
    [("top", [1]), ("det:0", [1]), ("det:2", [0]), ("det:3", [2]), ("class:circle", [3, 0]), ("all", [1, 3, 0])],
)
def test_targets_pick_detections_by_score(target, expected):
    picked = select_detections(parse_target(target), SCORES, LABELS, NAMES, 0.3)
    assert list(picked) == expected


@pytest.mark.parametrize(
    ("target", "error", "listed"),
    [
        ("class:zebra", ConfigError, "its classes: circle, square, triangle"),
        ("det:5", TargetNotFound, "4 detections (det:0 to det:3): det:0 square 0.90"),
        ("class:triangle", TargetNotFound, "detected: circle (2), square (1)"),
    ],
)
def test_a_target_matching_nothing_is_one_line_listing_what_exists(target, error, listed):
    with pytest.raises(error) as err:
        select_detections(parse_target(target), SCORES, LABELS, NAMES, 0.3)
    assert listed in str(err.value) and "\n" not in str(err.value)


def test_all_and_top_without_detections_say_so():
    with pytest.raises(TargetNotFound, match="no detection scores at or above output.pred_score_thr=0.95"):
        select_detections(parse_target("all"), SCORES, LABELS, NAMES, 0.95)
    with pytest.raises(TargetNotFound, match="detected nothing"):
        select_detections(parse_target("top"), np.zeros(0), np.zeros(0), NAMES, 0.3)


def test_a_random_init_detector_without_detections_asks_for_a_checkpoint():
    with pytest.raises(TargetNotFound) as err:
        select_detections(parse_target("top"), np.zeros(0), np.zeros(0), NAMES, 0.3, random_init="model_b")
    assert str(err.value) == (
        "target='top': random init: no detections; give model_b.checkpoint=<file> "
        "(without a checkpoint the detector's weights are random)"
    )


@pytest.mark.parametrize("bad", ["best", "det:x", "det:-1", "class:", "det"])
def test_bad_target_syntax_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="use top, det:<i>"):
        parse_target(bad)


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))


def test_gradcam_config_composes_with_its_target_and_explained_boxes_are_drawn_whatever_their_score():
    cfg = _compose("reducer=gradcam", "target=class:circle")
    settings = DrawSettings.from_config(cfg)
    assert settings.reducer == "gradcam" and settings.target.class_name == "circle"
    low = Detections(np.zeros((1, 4), np.float32), np.array([0.01], np.float32), np.zeros(1, np.int64), NAMES)
    assert len(settings.shown(low).boxes) == 1  # an explained det:7 below pred_score_thr is still drawn
    assert _compose().target == "top" and DrawSettings.from_config(_compose("reducer=eigencam")).target is None
    with pytest.raises(ConfigError, match="target='det:x'"):
        DrawSettings.from_config(_compose("reducer=gradcam", "target=det:x"))
    with pytest.raises(ConfigError, match="use_norm"):
        DrawSettings.from_config(_compose("reducer=gradcam", "use_norm=true"))
