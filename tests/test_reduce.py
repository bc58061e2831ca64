import numpy as np
import pytest

from featvis_run.errors import ConfigError
from featvis_run.maps.reduce import reduce_channels, standardize, topk_channels


def feat(c=6, h=4, w=5, seed=0):
    return np.random.default_rng(seed).normal(size=(c, h, w)).astype(np.float32)


def test_pixel_wise_max_and_squeeze_mean_reduce_over_channels():
    f = feat()
    mx = reduce_channels(f, "pixel_wise_max")
    mean = reduce_channels(f, "squeeze_mean")
    assert mx.maps.shape == mean.maps.shape == (1, 4, 5)
    np.testing.assert_allclose(mx.maps[0], f.max(axis=0))
    np.testing.assert_allclose(mean.maps[0], f.mean(axis=0), rtol=1e-6)
    assert mx.channels == mean.channels == ()
    assert mx.kind == mean.kind == "single"


def test_select_max_picks_channel_with_largest_spatial_sum():
    f = feat()
    f[3] += 10.0
    r = reduce_channels(f, "select_max")
    assert r.channels == (3,)
    np.testing.assert_array_equal(r.maps[0], f[3])


def test_topk_ranks_channels_by_spatial_sum():
    f = np.zeros((5, 2, 2), np.float32)
    for c, v in enumerate([1.0, 5.0, -2.0, 3.0, 4.0]):
        f[c] = v
    assert topk_channels(f, 3) == (1, 4, 3)
    r = reduce_channels(f, "none", topk=3)
    assert r.kind == "grid" and r.channels == (1, 4, 3)
    np.testing.assert_array_equal(r.maps, f[[1, 4, 3]])


def test_topk_larger_than_channels_is_clamped_with_note():
    r = reduce_channels(feat(c=4), "none", topk=10, where="neck/p3")
    assert len(r.channels) == 4
    assert "topk=10 clamped to the 4 channels of neck/p3" in r.note


def test_topk_minus_one_needs_one_or_three_channels():
    assert reduce_channels(feat(c=1), "none", topk=-1).kind == "single"
    r3 = reduce_channels(feat(c=3), "none", topk=-1)
    assert r3.kind == "image" and r3.maps.shape == (3, 4, 5)
    with pytest.raises(ConfigError, match=r"topk=-1 .* neck/p3 has 256.*reducer=pixel_wise_max"):
        reduce_channels(feat(c=256), "none", topk=-1, where="neck/p3")


@pytest.mark.parametrize("bad", [0, -2])
def test_invalid_topk_names_the_value(bad):
    with pytest.raises(ConfigError, match=f"topk={bad}"):
        reduce_channels(feat(), "none", topk=bad)


def test_unknown_reducer_lists_valid_ones():
    with pytest.raises(ConfigError, match="squeeze_mean"):
        reduce_channels(feat(), "median")


def test_standardize_matches_mmrazor_norm():
    import torch

    f = feat(c=3, h=7, w=9) * 5 + 2
    ours = standardize(f)
    # MMRazor's norm(): per channel over N*H*W, torch.std (unbiased) + 1e-6
    t = torch.from_numpy(f)[None]
    n, c, h, w = t.shape
    flat = t.permute(1, 0, 2, 3).reshape(c, -1)
    ref = ((flat - flat.mean(-1, keepdim=True)) / (flat.std(-1, keepdim=True) + 1e-6)).reshape(c, n, h, w)
    np.testing.assert_allclose(ours, ref.permute(1, 0, 2, 3)[0].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.reshape(3, -1).mean(1), 0, atol=1e-5)


def test_rejects_non_chw_input():
    with pytest.raises(ConfigError, match=r"\(C, H, W\)"):
        reduce_channels(np.zeros((2, 3)), "squeeze_mean")
