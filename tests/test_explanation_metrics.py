"""Explanation metrics against hand computations on synthetic maps, boxes and score functions (fast, no model)."""

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featvis_run.analysis.metrics import (
    box_mask,
    energy_in_boxes,
    matched_score,
    perturbation_curves,
    pointing_game,
    random_map,
    random_seed,
    saliency_on_image,
    step_counts,
    trapezoid_auc,
)
from featvis_run.errors import ConfigError
from featvis_run.experiments.metrics_run import MetricsPlan, metric_means
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.cam import FUSED
from featvis_run.maps.geometry import Geometry
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import register_configs

from .conftest import CONF_DIR

register_configs()


def test_box_mask_takes_the_pixels_whose_centre_lies_in_a_box():
    # columns c with 1 <= c + 0.5 < 3.5 are 1, 2 (c=3: 3.5 is not < 3.5); rows with 0.6 <= r + 0.5 < 2 are 1
    mask = box_mask((4, 6), [(1.0, 0.6, 3.5, 2.0)])
    expected = np.zeros((4, 6), bool)
    expected[1, 1:3] = True
    np.testing.assert_array_equal(mask, expected)
    # a union, and a box partly outside the image is clipped
    union = box_mask((4, 6), [(0, 0, 1, 1), (5, 3, 9, 9)])
    assert union.sum() == 2 and union[0, 0] and union[3, 5]


def test_pointing_game_and_energy_in_boxes_by_hand():
    sal = np.zeros((4, 6))
    sal[1, 1], sal[1, 2], sal[3, 5] = 2.0, 1.0, 5.0  # total 8; the peak (5) at row 3, col 5
    inside = box_mask((4, 6), [(1, 1, 3, 2)])  # row 1, cols 1-2: energy 3 of 8
    assert pointing_game(sal, inside) == 0
    assert energy_in_boxes(sal, inside) == pytest.approx(3 / 8)
    both = box_mask((4, 6), [(1, 1, 3, 2), (5, 3, 6, 4)])
    assert pointing_game(sal, both) == 1 and energy_in_boxes(sal, both) == pytest.approx(1.0)
    # ties: the first maximum in row-major order decides; an all-zero map points nowhere
    tied = np.zeros((2, 2))
    tied[0, 1] = tied[1, 0] = 1.0
    assert pointing_game(tied, box_mask((2, 2), [(0, 1, 1, 2)])) == 0  # (1, 0) holds a max, but (0, 1) is first
    assert pointing_game(tied, box_mask((2, 2), [(1, 0, 2, 1)])) == 1
    assert pointing_game(np.zeros((2, 2)), np.ones((2, 2), bool)) == 0
    assert energy_in_boxes(np.zeros((2, 2)), np.ones((2, 2), bool)) == 0.0


def test_saliency_on_image_is_bilinear_with_negatives_and_nan_zeroed():
    saved = np.array([[-1.0, 1.0], [np.nan, 3.0]], np.float32)
    up = saliency_on_image(saved, (2, 2))
    np.testing.assert_array_equal(up, [[0.0, 1.0], [0.0, 3.0]])
    # 1 x 2 -> 1 x 4 with half-pixel centres: x = 0.25, 0.75, 1.25, 1.75 source pixels -> 0, 0.25*4, 0.75*4, 4
    up = saliency_on_image(np.array([[0.0, 4.0]], np.float32), (1, 4))
    np.testing.assert_allclose(up, [[0.0, 1.0, 3.0, 4.0]])


def test_step_counts_and_trapezoid_auc():
    assert step_counts(10, 4) == [0, 2, 5, 7, 10]  # floor(k * 10 / 4)
    assert trapezoid_auc([1.0, 0.0]) == pytest.approx(0.5)
    assert trapezoid_auc([1.0, 0.5, 0.0, 0.0]) == pytest.approx((0.75 + 0.25 + 0.0) / 3)


def test_deletion_and_insertion_curves_of_a_synthetic_score():
    # a 1 x 4 image, values 10, 20, 30, 40; its "blurred copy" is 0 everywhere; the score is the sum of the pixel
    # values (unperturbed: 100). The map ranks the pixels 3, 1, 0, 2.
    image = np.array([[[10], [20], [30], [40]]], np.uint8)
    sal = np.array([[2.0, 3.0, 1.0, 4.0]])
    calls = []

    def score(images):
        calls.append(len(images))
        return [float(im.astype(np.int64).sum()) for im in images]

    curves = perturbation_curves(image, sal, score, 100.0, steps=2, blurred=np.zeros_like(image))
    # deletion: nothing removed 1.0; the first 2 (pixels 3, 1) removed: 40/100; all removed: 0
    assert curves.deletion == (1.0, 0.4, 0.0)
    # insertion: nothing revealed 0; pixels 3 and 1 revealed: 60/100; everything: 1.0
    assert curves.insertion == (0.0, 0.6, 1.0)
    assert curves.deletion_auc == pytest.approx(0.5 * (1.0 + 0.4) / 2 + 0.5 * (0.4 + 0.0) / 2)
    assert curves.insertion_auc == pytest.approx(0.5 * (0.0 + 0.6) / 2 + 0.5 * (0.6 + 1.0) / 2)
    assert calls == [4]  # 2 x steps images, in one call


def test_the_explained_score_matches_same_class_detections_with_iou_at_least_half():
    explained = [((0.0, 0.0, 10.0, 10.0), "circle"), ((20.0, 20.0, 30.0, 30.0), "square")]
    found = [
        ((0.0, 0.0, 10.0, 5.0), "circle", 0.9),  # IoU 0.5: matches, but overlaps less than the next one
        ((0.0, 0.0, 10.0, 9.0), "circle", 0.6),  # IoU 0.9: the best overlap wins, whatever its score
        ((0.0, 0.0, 10.0, 10.0), "square", 0.99),  # another class
        ((20.0, 20.0, 30.0, 24.0), "square", 0.8),  # IoU 0.4 < 0.5: no match -> 0
    ]
    assert matched_score(explained, found) == pytest.approx(0.6)
    assert matched_score(explained[:1], found[:1]) == pytest.approx(0.9)  # exactly 0.5 counts
    assert matched_score(explained, []) == 0.0


def test_random_maps_are_seeded_by_the_image_id():
    a = random_map((3, 4), random_seed("img"))
    np.testing.assert_array_equal(a, random_map((3, 4), random_seed("img")))
    assert not np.array_equal(a, random_map((3, 4), random_seed("img-2")))
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() < 1.0


def _compose(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))


def test_metrics_plan_checks_its_settings_and_states_its_cost():
    assert MetricsPlan.from_config(_compose("reducer=gradcam")) is None  # off by default
    plan = MetricsPlan.from_config(
        _compose("reducer=gradcam", "analysis.metrics=true", "analysis.steps=7", "analysis.baseline=random")
    )
    assert plan.passes_per_image == 28 and "28 forward passes per image" in plan.cost_line()
    for overrides, match in (
        (("analysis.metrics=true",), "reducer=squeeze_mean"),
        (("reducer=gradcam", "analysis.metrics=true", "analysis.steps=0"), "analysis.steps=0"),
        (("reducer=gradcam", "analysis.metrics=true", "analysis.baseline=noise"), "analysis.baseline='noise'"),
        (("reducer=gradcam", "analysis.baseline=random"), "add analysis.metrics=true"),
    ):
        with pytest.raises(ConfigError, match=match):
            MetricsPlan.from_config(_compose(*overrides))


def test_eigencam_gets_a_fused_level_of_its_clipped_max_normalised_levels():
    geom = Geometry((4, 4), (4, 4), (4, 4))
    pattern = np.array([[0, 1, 2, 3]] * 4, np.float32)  # a rank-one map: EigenCAM gives the centred pattern
    feats = {LevelKey("neck", "p0"): np.stack([pattern, 2 * pattern])}
    plan = MetricsPlan.from_config(_compose("reducer=eigencam", "analysis.metrics=true"))
    settings = DrawSettings.from_config(_compose("reducer=eigencam"))
    ((key, fused),) = plan.extra_levels(feats, geom, settings).items()
    assert key == LevelKey("neck", FUSED) and fused.shape == (1, 4, 4)
    # centred pattern -1.5, -0.5, 0.5, 1.5 (times a positive factor): clipped at 0, divided by its max
    np.testing.assert_allclose(fused[0], [[0, 0, 1 / 3, 1]] * 4, atol=1e-6)


def test_metric_means_skip_nulls_and_average_the_random_baseline():
    class Im:
        def __init__(self, metrics):
            self.metrics = metrics

    a = {"pointing_game": 1, "energy_in_boxes": None, "deletion_auc": 0.2, "insertion_auc": 0.8, "steps": 4}
    b = {"pointing_game": 0, "energy_in_boxes": 0.5, "deletion_auc": 0.4, "insertion_auc": 0.6, "steps": 4}
    a["random"] = {"pointing_game": 0, "energy_in_boxes": 0.1, "deletion_auc": 0.5, "insertion_auc": 0.5}
    block = metric_means([Im(a), Im(None), Im(b)], "neck")
    assert block["images"] == 2 and block["pointing_game"] == 0.5 and block["energy_in_boxes"] == 0.5
    assert block["deletion_auc"] == pytest.approx(0.3) and block["random"]["deletion_auc"] == 0.5
