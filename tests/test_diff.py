import json

import cv2
import numpy as np
import pytest

from featvis_run.errors import ConfigError
from featvis_run.maps.diff import (
    LevelComparison,
    compare_levels,
    cosine_similarity,
    diff_map,
    linear_cka,
    linear_cka_gram,
    mean_abs_diff,
    resize_to_common,
)


def feat(c=4, h=5, w=6, seed=0):
    return np.random.default_rng(seed).normal(size=(c, h, w)).astype(np.float32)


A = np.array([[[1.0, -2.0], [0.0, 3.0]]], dtype=np.float32)  # (1, 2, 2)
B = np.array([[[3.0, 2.0], [0.0, -1.0]]], dtype=np.float32)


# --- diff_map ---------------------------------------------------------------------------------------------------


def test_diff_modes_exact_values():
    np.testing.assert_array_equal(diff_map(A, B, "signed"), [[[-2.0, -4.0], [0.0, 4.0]]])
    np.testing.assert_array_equal(diff_map(A, B, "abs"), [[[2.0, 4.0], [0.0, 4.0]]])
    rel = diff_map(A, B, "relative", eps=1e-6)
    np.testing.assert_allclose(rel, [[[2.0 / 4.0, 1.0], [0.0, 1.0]]], rtol=1e-5)
    assert rel[0, 1, 0] == 0.0  # 0 vs 0: eps keeps it finite
    assert diff_map(A, B, "abs").shape == A.shape


def test_relative_diff_is_bounded():
    a, b = feat(seed=1) * 10, feat(seed=2)
    b[0] = -a[0]  # opposite signs give the maximum
    rel = diff_map(a, b, "relative")
    assert np.all(np.isfinite(rel))
    assert rel.min() >= 0.0 and rel.max() <= 1.0
    np.testing.assert_allclose(rel[0], 1.0, atol=1e-5)
    np.testing.assert_array_equal(diff_map(a, a, "relative"), 0.0)


def test_unknown_mode_names_mode_and_choices():
    with pytest.raises(ConfigError, match=r"'squared'.*abs, signed, relative"):
        diff_map(A, B, "squared")


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ConfigError, match=r"\(1, 2, 2\) and \(1, 3, 2\).*resize_to_common"):
        diff_map(A, np.zeros((1, 3, 2), np.float32), "abs")
    with pytest.raises(ConfigError, match=r"\(1, 2, 2\) and \(2, 2, 2\).*channel"):
        mean_abs_diff(A, np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ConfigError, match=r"\(2, 2\)"):
        diff_map(A[0], B[0], "abs")


def test_relative_eps_must_be_positive():
    with pytest.raises(ConfigError, match="eps=0"):
        diff_map(A, B, "relative", eps=0)


# --- resize_to_common -------------------------------------------------------------------------------------------


def test_resize_to_common_leaves_equal_grids_untouched():
    a, b = feat(c=3), feat(c=5, seed=1)
    ra, rb, size = resize_to_common(a, b)
    assert size is None
    assert ra is a and rb is b


def test_resize_to_common_picks_smaller_grid_with_area_averaging():
    big = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    small = feat(c=3, h=4, w=4)
    rb, rs, size = resize_to_common(big, small)
    assert size == (4, 4)
    assert rb.shape == (2, 4, 4) and rs is small
    expected = big.reshape(2, 4, 2, 4, 2).mean(axis=(2, 4))  # exact 2x2 block means
    np.testing.assert_allclose(rb, expected, rtol=1e-6)


def test_resize_to_common_mixed_grids_take_min_of_each_side():
    a, b = feat(h=10, w=4), feat(h=5, w=8, seed=1)
    ra, rb, size = resize_to_common(a, b)
    assert size == (5, 4)
    assert ra.shape == rb.shape == (4, 5, 4)


# --- mean_abs_diff / cosine -------------------------------------------------------------------------------------


def test_mean_abs_diff_basic():
    assert mean_abs_diff(A, B) == pytest.approx(10.0 / 4.0)
    assert mean_abs_diff(A, A) == 0.0
    a, b = feat(seed=3), feat(seed=4)
    assert mean_abs_diff(a, b) == pytest.approx(mean_abs_diff(b, a))
    assert isinstance(mean_abs_diff(a, b), float)


def test_cosine_basic_properties():
    a, b = feat(seed=3), feat(seed=4)
    assert cosine_similarity(a, a) == pytest.approx(1.0)
    assert cosine_similarity(a, 3 * a) == pytest.approx(1.0)
    assert cosine_similarity(a, -a) == pytest.approx(-1.0)
    assert cosine_similarity(a, b) == pytest.approx(cosine_similarity(b, a))
    assert -1.0 <= cosine_similarity(a, b) <= 1.0
    x, y = np.zeros((1, 1, 2)), np.zeros((1, 1, 2))
    x[0, 0, 0], y[0, 0, 1] = 1.0, 5.0
    assert cosine_similarity(x, y) == 0.0  # orthogonal


def test_cosine_zero_conventions():
    z = np.zeros((2, 3, 3), np.float32)
    assert cosine_similarity(z, z) == 1.0
    assert cosine_similarity(z, feat(c=2, h=3, w=3)) == 0.0
    assert cosine_similarity(feat(c=2, h=3, w=3), z) == 0.0


# --- linear CKA -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("ca", "cb", "h", "w"), [(4, 4, 5, 6), (3, 7, 4, 5), (16, 2, 3, 3), (40, 30, 2, 3)])
def test_cka_matches_gram_formula(seed, ca, cb, h, w):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(ca, h, w))
    b = rng.normal(size=(cb, h, w)) + 0.5 * rng.normal() * a[:1].repeat(cb, axis=0)  # some shared signal
    n = h * w
    x, y = a.reshape(ca, n).T, b.reshape(cb, n).T
    assert linear_cka(a, b) == pytest.approx(linear_cka_gram(x, y), abs=1e-10)
    assert linear_cka_gram(a, b) == pytest.approx(linear_cka_gram(x, y), abs=1e-12)  # (C, H, W) input too


def test_cka_identical_is_one():
    a = feat(c=8, h=6, w=7)
    assert linear_cka(a, a) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling():
    rng = np.random.default_rng(5)
    c, h, w = 6, 8, 9
    a = rng.normal(size=(c, h, w))
    b = rng.normal(size=(c, h, w)) + a
    q, _ = np.linalg.qr(rng.normal(size=(c, c)))
    a_rot = np.einsum("ij,jhw->ihw", q, a)  # mixes channels orthogonally
    ref = linear_cka(a, b)
    assert 0.1 < ref < 0.99
    assert linear_cka(a_rot, b) == pytest.approx(ref, abs=1e-10)
    assert linear_cka(a, a_rot) == pytest.approx(1.0, abs=1e-10)
    assert linear_cka(7.5 * a, 0.01 * b) == pytest.approx(ref, abs=1e-10)
    assert linear_cka(a + 3.0, b) == pytest.approx(ref, abs=1e-10)  # centering removes offsets


def test_cka_across_channel_counts():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(4, 10, 10))
    proj = rng.normal(size=(12, 4))
    b = np.einsum("ij,jhw->ihw", proj, a)  # 12 channels, a linear image of a
    assert 0.3 < linear_cka(a, b) <= 1.0
    assert linear_cka(a, b) == pytest.approx(linear_cka(b, a), abs=1e-12)
    assert linear_cka(a, a[:2]) > linear_cka(a, rng.normal(size=(2, 10, 10)))


def test_cka_in_unit_interval():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(size=(5, 4, 4)), rng.normal(size=(3, 4, 4)) ** 2
        assert 0.0 <= linear_cka(a, b) <= 1.0


def test_cka_low_for_independent_features_with_many_positions():
    a, b = feat(c=8, h=64, w=64, seed=10), feat(c=8, h=64, w=64, seed=11)
    assert linear_cka(a, b) < 0.2


def test_cka_degenerate_constant_maps():
    z = np.zeros((3, 4, 4), np.float32)
    const = np.full((2, 4, 4), 2.5, np.float32)
    a = feat(c=3, h=4, w=4)
    assert linear_cka(z, const) == 1.0  # both constant
    assert linear_cka(z, a) == 0.0  # exactly one constant
    assert linear_cka(a, const) == 0.0
    assert linear_cka(feat(h=1, w=1), feat(h=1, w=1, seed=1)) == 1.0  # one position: nothing varies
    assert linear_cka_gram(z, const) == 1.0 and linear_cka_gram(z, a) == 0.0


def test_cka_constant_channel_does_not_add_noise():
    a = feat(c=3, h=6, w=6).astype(np.float64)
    b = a.copy()
    b[0] = 1e6  # a huge constant channel is removed by centering
    assert linear_cka(a[1:], b) == pytest.approx(1.0, abs=1e-12)


def test_cka_needs_equal_spatial_size():
    with pytest.raises(ConfigError, match=r"\(4, 5, 6\) and \(4, 3, 3\).*resize_to_common"):
        linear_cka(feat(), feat(h=3, w=3))


# --- compare_levels ---------------------------------------------------------------------------------------------


def test_compare_levels_equal_shapes():
    a, b = feat(seed=1), feat(seed=2)
    cmp = compare_levels(a, b)
    assert isinstance(cmp, LevelComparison)
    assert cmp.elementwise and cmp.resized_to is None
    assert cmp.shape_a == cmp.shape_b == (4, 5, 6)
    assert cmp.mean_abs_diff == pytest.approx(mean_abs_diff(a, b))
    assert cmp.cosine == pytest.approx(cosine_similarity(a, b))
    assert cmp.cka == pytest.approx(linear_cka(a, b))
    with pytest.raises(AttributeError):
        cmp.cka = 0.0  # frozen
    assert compare_levels(a, a).cka == pytest.approx(1.0)


def test_compare_levels_different_spatial_sizes():
    a, b = feat(c=4, h=8, w=12), feat(c=4, h=4, w=6, seed=1)
    cmp = compare_levels(a, b)
    assert cmp.resized_to == (4, 6)
    assert cmp.shape_a == (4, 8, 12) and cmp.shape_b == (4, 4, 6)
    assert cmp.elementwise and cmp.mean_abs_diff is not None and cmp.cosine is not None
    ra, rb, _ = resize_to_common(a, b)
    assert cmp.cka == pytest.approx(linear_cka(ra, rb))


def test_compare_levels_different_channel_counts():
    a = feat(c=4, h=6, w=6)
    b = np.concatenate([a, feat(c=2, h=6, w=6, seed=1)])  # 6 channels, shares a's 4
    cmp = compare_levels(a, b)
    assert not cmp.elementwise
    assert cmp.mean_abs_diff is None and cmp.cosine is None
    assert 0.0 < cmp.cka < 1.0
    d = cmp.to_dict()
    assert d == json.loads(json.dumps(d))
    assert d["shape_a"] == [4, 6, 6] and d["shape_b"] == [6, 6, 6]
    assert d["resized_to"] is None and d["elementwise"] is False and d["mean_abs_diff"] is None


@pytest.mark.parametrize("channels", [1, 3, 5, 130, 256])
def test_resize_to_common_handles_many_channels_and_non_integer_scales(channels):
    from featvis_run.maps.diff import resize_to_common

    rng = np.random.default_rng(channels)
    a = rng.normal(size=(channels, 25, 38)).astype(np.float32)
    b = rng.normal(size=(channels, 12, 13)).astype(np.float32)
    ra, rb, size = resize_to_common(a, b)
    assert size == (12, 13) and ra.shape == (channels, 12, 13) and rb is b
    # each channel exactly as OpenCV resizes it alone (channels stay in place, whatever chunks are used inside)
    want = np.stack([cv2.resize(ch, (13, 12), interpolation=cv2.INTER_AREA) for ch in a])
    np.testing.assert_allclose(ra, want, rtol=1e-5, atol=1e-6)
