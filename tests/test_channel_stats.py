"""Channel statistics and the atlas's math (fast, no model): hand-computed sums and their merge, the dead rule, the
files they are kept in, the top-N heap against a brute-force ranking, and the box a feature cell covers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from featvis_run.analysis.atlas import TopCells, cell_box, context_box, image_peaks
from featvis_run.analysis.atlas_page import crop_picture
from featvis_run.analysis.channels import (
    channel_rows,
    dead_channels,
    empty_moments,
    merge_levels,
    merge_moments,
    moments_of,
)
from featvis_run.analysis.partials import (
    ImagePartial,
    LevelPartial,
    channels_csv,
    image_partial_arrays,
    npz_bytes,
    read_image_partial,
    read_run_partial,
    run_partial_arrays,
)
from featvis_run.analysis.sweep_merge import merge_sweep_channels, shard_groups
from featvis_run.maps.geometry import Geometry


def test_statistics_of_a_small_map_by_hand():
    # channel 0: 1, 2, 3, 0, -1, 0 -> mean 5/6, max 3, min -1, cells <= 0: 3 of 6
    # channel 1: constant 2 -> std 0, dead; channel 2: 4 and 0 alternating -> mean 2, std 2, sparsity 1/2
    cells = np.array(
        [[[1, 2, 3], [0, -1, 0]], [[2, 2, 2], [2, 2, 2]], [[4, 0, 4], [0, 4, 0]]],
        np.float32,
    )
    rows = channel_rows(moments_of(cells))
    r0, r1, r2 = rows
    assert (r0.cells, r0.maximum, r0.minimum, r0.sparsity, r0.dead) == (6, 3.0, -1.0, 0.5, False)
    assert r0.mean == pytest.approx(5 / 6, abs=1e-15)
    # squared deviations from 5/6: (1/6)^2 + (7/6)^2 + (13/6)^2 + 2 (5/6)^2 + (11/6)^2 = 389/36 ... over 6
    assert r0.std == pytest.approx(math.sqrt((1 + 49 + 169 + 25 + 121 + 25) / 36 / 6), abs=1e-15)
    assert (r1.mean, r1.std, r1.sparsity, r1.dead) == (2.0, 0.0, 0.0, True)
    assert (r2.mean, r2.std, r2.sparsity, r2.dead) == (2.0, 2.0, 0.5, False)


def test_non_finite_cells_are_not_counted():
    cells = np.array([[[1.0, np.nan], [np.inf, 3.0]], [[np.nan, np.nan], [-np.inf, np.nan]]])
    m = moments_of(cells)
    assert m.count.tolist() == [2, 0]
    assert (m.mean[0], m.m2[0], m.minimum[0], m.maximum[0]) == (2.0, 2.0, 1.0, 3.0)
    rows = channel_rows(m)
    assert rows[1].mean is None and rows[1].dead is False  # no value at all: not "never varies"


def test_merge_of_two_parts_by_hand():
    # [1, 2, 3] and [4, 5]: mean 3, M2 = 4 + 1 + 0 + 1 + 4 = 10, std sqrt(2)
    a, b = moments_of(np.array([[1.0, 2.0, 3.0]])), moments_of(np.array([[4.0, 5.0]]))
    for m in (merge_moments(a, b), merge_moments(b, a)):
        assert (int(m.count[0]), float(m.mean[0]), float(m.m2[0])) == (5, 3.0, 10.0)
        assert channel_rows(m)[0].std == pytest.approx(math.sqrt(2), abs=1e-15)
    empty = empty_moments(1)
    assert float(merge_moments(empty, a).m2[0]) == 2.0 and float(merge_moments(a, empty).mean[0]) == 2.0


def test_merge_is_order_independent_on_small_parts():
    rng = np.random.default_rng(3)
    parts = [rng.normal(3.0, 2.0, (4, n)) for n in (1, 5, 2, 7)]
    whole = np.concatenate(parts, axis=1)
    for order in itertools.permutations(range(4)):
        m = empty_moments(4)
        for i in order:
            m = merge_moments(m, moments_of(parts[i]))
        np.testing.assert_allclose(m.mean, whole.mean(axis=1), rtol=0, atol=1e-12)
        np.testing.assert_allclose(m.m2, ((whole - whole.mean(axis=1, keepdims=True)) ** 2).sum(1), atol=1e-12)
        assert m.count.tolist() == [15] * 4


def test_merge_of_many_parts_matches_the_whole_to_1e6_relative():
    rng = np.random.default_rng(4)
    whole = (rng.normal(1000.0, 0.5, (8, 20000))).astype(np.float32)  # large mean, small spread: naive sums fail
    cuts = np.sort(rng.choice(np.arange(1, 20000), 40, replace=False))
    parts = np.split(whole, cuts, axis=1)
    m = empty_moments(8)
    for i in rng.permutation(len(parts)):
        m = merge_moments(m, moments_of(parts[i]))
    w64 = whole.astype(np.float64)
    rows = channel_rows(m)
    np.testing.assert_allclose([r.mean for r in rows], w64.mean(1), rtol=1e-6)
    np.testing.assert_allclose([r.std for r in rows], w64.std(1), rtol=1e-6)
    assert [r.maximum for r in rows] == w64.max(1).tolist()


def test_dead_rule_tolerance_by_hand():
    # max - min <= 1e-6 * (1 + |max|): at max 5 the tolerance is about 6e-6, near 0 it is 1e-6 (not 0)
    cells = np.array([[5.0, 5.0 + 5e-6], [5.0, 5.0 + 7e-6], [0.0, 0.0], [-2.0, -2.0], [0.0, 9e-7], [0.0, 1.1e-6]])
    assert dead_channels(moments_of(cells)).tolist() == [True, False, True, True, True, False]


def test_levels_with_other_channel_counts_are_refused_by_name():
    a = {("neck", "p3"): moments_of(np.zeros((2, 3)))}
    b = {("neck", "p3"): moments_of(np.zeros((3, 3)))}
    with pytest.raises(ValueError, match="neck/p3 has 2 channels in one part and 3"):
        merge_levels(a, b, {("neck", "p3"): "neck/p3"})


def test_channels_csv_columns_and_values():
    levels = {
        ("neck", "p3"): moments_of(np.array([[0.0, 2.0], [1.0, 1.0]])),
        ('a,"b"', "x"): moments_of(np.ones((1, 1))),
    }
    lines = channels_csv(levels).splitlines()
    assert lines[0] == "layer,level,channel,mean,std,max,sparsity,dead,min,cells"
    assert lines[1] == "neck,p3,0,1.0,1.0,2.0,0.5,false,0.0,2"
    assert lines[2] == "neck,p3,1,1.0,0.0,1.0,0.0,true,1.0,2"
    assert lines[3] == '"a,""b""",x,0,1.0,0.0,1.0,0.0,true,1.0,1'


def test_partials_read_back_exactly_and_bad_files_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    cells = rng.normal(size=(3, 4, 5))
    geometry = Geometry((30, 40), (60, 80), (64, 96), (0, 8))
    partial = ImagePartial(geometry, (LevelPartial("neck", "p3", (8, 12), moments_of(cells), image_peaks(cells)),))
    path = tmp_path / "img.npz"
    path.write_bytes(npz_bytes(image_partial_arrays(partial)))
    back = read_image_partial(path)
    assert back.geometry == geometry and back.levels[0].feat_hw == (8, 12) and back.affine is None
    for name in ("count", "mean", "m2", "minimum", "maximum", "nonpositive"):
        np.testing.assert_array_equal(getattr(back.levels[0].moments, name), getattr(partial.levels[0].moments, name))
    for got, want in zip(back.levels[0].peaks, partial.levels[0].peaks, strict=True):
        np.testing.assert_array_equal(got, want)

    run = tmp_path / "channels.partial.npz"
    run.write_bytes(npz_bytes(run_partial_arrays({("neck", "p3"): moments_of(cells)}, ["a", "b"])))
    levels, images = read_run_partial(run)
    assert images == ["a", "b"] and list(levels) == [("neck", "p3")]
    np.testing.assert_array_equal(levels[("neck", "p3")].m2, moments_of(cells).m2)

    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        read_image_partial(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="lacks"):
        read_run_partial(tmp_path / "other.npz")


def test_image_peaks_skip_non_finite_cells_and_take_the_first_maximum():
    nan, inf = np.nan, np.inf
    cells = np.array(
        [
            [[1.0, 7.0, 7.0], [inf, 2.0, 0.0]],  # 7 first at (0, 1); +inf is not a value
            [[nan, nan, nan], [nan, nan, nan]],  # nothing finite
            [[-3.0, -1.0, -2.0], [-1.0, -5.0, nan]],  # -1 first at (0, 1)
        ]
    )
    values, rows, cols = image_peaks(cells)
    assert values.tolist() == [7.0, -np.inf, -1.0]
    assert rows.tolist() == [0, -1, 0] and cols.tolist() == [1, -1, 1]


def test_top_cells_equal_a_brute_force_ranking_whatever_the_arrival_order():
    rng = np.random.default_rng(6)
    images, channels = 40, 5
    values = rng.integers(0, 6, (images, channels)).astype(float)  # many ties
    values[rng.random((images, channels)) < 0.1] = -np.inf  # no finite cell in that image
    rows, cols = rng.integers(0, 9, (images, channels)), rng.integers(0, 9, (images, channels))
    for n in (1, 3, 50):
        expected = [
            sorted(
                ((values[i, c], i, rows[i, c], cols[i, c]) for i in range(images) if values[i, c] > -np.inf),
                key=lambda t: (-t[0], t[1]),
            )[:n]
            for c in range(channels)
        ]
        in_order = TopCells(channels, n)
        for i in range(images):
            in_order.add(i, values[i], rows[i], cols[i])
        shuffled_halves = [TopCells(channels, n), TopCells(channels, n)]
        for i in rng.permutation(images):
            shuffled_halves[i % 2].add(int(i), values[i], rows[i], cols[i])
        shuffled_halves[1].merge(shuffled_halves[0])
        for top in (in_order, shuffled_halves[1]):
            got = [[(t.value, t.seq, t.row, t.col) for t in top.ranked(c)] for c in range(channels)]
            assert got == expected, n


def test_cell_box_by_hand():
    # 300 x 400 image resized to 480 x 640 (x1.6), a 60 x 80 map: stride 8; cell (2, 3) covers input y 16..24,
    # x 24..32, i.e. original y 10..15, x 15..20
    g = Geometry((300, 400), (480, 640), (480, 640))
    assert cell_box(2, 3, (60, 80), g) == pytest.approx((15.0, 10.0, 20.0, 15.0))
    # centred in a padded input (offset 16, 32): valid cells start at row 2, col 4; valid cell (0, 0) is the
    # recorded cell (2, 4): input y 16..24, x 32..40 -> original (y - 16) / 1.6, (x - 32) / 1.6
    g = Geometry((300, 400), (480, 640), (512, 704), (16, 32))
    assert cell_box(0, 0, (64, 88), g) == pytest.approx((0.0, 0.0, 5.0, 5.0))
    # an affine x_in = 2 x + 10, y_in = 0.5 y - 4 (the bounding box of the inverted corners)
    g = Geometry((100, 100), (46, 200), (48, 208))
    assert cell_box(1, 2, (6, 26), g, affine=[[2, 0, 10], [0, 0.5, -4]]) == pytest.approx((3.0, 24.0, 7.0, 40.0))


def test_context_box_grows_about_the_centre_and_clips_to_the_image():
    assert context_box((15.0, 10.0, 20.0, 15.0), (300, 400)) == (10, 5, 25, 20)
    assert context_box((0.0, 0.0, 5.0, 5.0), (300, 400)) == (0, 0, 10, 10)
    assert context_box((395.5, 290.0, 400.0, 300.0), (300, 400), factor=1.0) == (395, 290, 400, 300)
    assert context_box((500.0, 500.0, 600.0, 600.0), (300, 400)) == (399, 299, 400, 300)  # at least one pixel


def test_crop_picture_cuts_the_context_and_outlines_the_cell():
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:50, 40:50] = 200  # the cell
    # the context is 3 cells wide: 30..60, 30 px -> 90 px (x3); the cell lies at 30..60 of the crop
    crop = crop_picture(image, (40.0, 40.0, 50.0, 50.0), height=90)
    assert crop.shape == (90, 90, 3)
    assert (crop[20, 20] == 0).all() and (crop[45, 45] == 200).all() and (crop[70, 70] == 0).all()
    yellow = [0, 255, 255]
    assert crop[30, 45].tolist() == yellow and crop[45, 30].tolist() == yellow and crop[59, 59].tolist() == yellow
    assert crop[29, 45].tolist() == [0, 0, 0] and crop[60, 45].tolist() == [0, 0, 0]


def test_shard_groups_and_a_sweep_merge_equal_one_run(tmp_path):
    jobs = [
        ("0_a", {"images.shard": "0/2", "reducer": "x"}),
        ("1_b", {"images.shard": "1/2", "reducer": "x"}),
        ("2_c", {"reducer": "y"}),
        ("3_d", {"reducer": "z"}),
    ]
    assert shard_groups(jobs) == [("reducer=x", ["0_a", "1_b"])]
    assert shard_groups([("0", {"reducer": "y"}), ("1", {"reducer": "y"})]) == []  # repeats, not shards
    rng = np.random.default_rng(7)
    whole = rng.normal(size=(3, 50))
    for job, part, ids in (("0_a", whole[:, :20], ["i0"]), ("1_b", whole[:, 20:], ["i1"])):
        (tmp_path / job).mkdir()
        arrays = run_partial_arrays({("neck", "p3"): moments_of(part)}, ids)
        (tmp_path / job / "channels.partial.npz").write_bytes(npz_bytes(arrays))
    merged = merge_sweep_channels(tmp_path, jobs)
    assert merged.files == {"channels.csv": ["0_a", "1_b"]} and merged.notes == []
    table = [ln.split(",") for ln in (tmp_path / "channels.csv").read_text().splitlines()[1:]]
    expected = channel_rows(moments_of(whole))
    assert [(t[0], t[1], int(t[2]), int(t[9])) for t in table] == [("neck", "p3", c, 50) for c in range(3)]
    np.testing.assert_allclose(
        [[float(t[3]), float(t[4]), float(t[5])] for t in table],
        [[r.mean, r.std, r.maximum] for r in expected],
        rtol=1e-12,
    )
    # the same image counted by two shards: not merged, and said so
    arrays = run_partial_arrays({("neck", "p3"): moments_of(whole[:, 20:])}, ["i0"])
    (tmp_path / "1_b" / "channels.partial.npz").write_bytes(npz_bytes(arrays))
    (tmp_path / "channels.csv").unlink()
    merged = merge_sweep_channels(tmp_path, jobs)
    assert merged.files == {} and not (tmp_path / "channels.csv").exists()
    assert merged.notes == [
        "channel statistics of the shards (reducer=x) not merged: image i0 was counted by jobs 0_a and 1_b"
    ]


def test_analysis_settings_are_checked_before_a_run_starts():
    from featvis_run.analysis.collector import check_analysis
    from featvis_run.errors import ConfigError
    from featvis_run.schema import AnalysisConfig

    check_analysis(AnalysisConfig(channels=True, top_images=50), "multi_image")
    check_analysis(AnalysisConfig(), "diff")  # nothing asked: nothing refused
    with pytest.raises(ConfigError, match=r"^analysis.channels / analysis.top_images .* not experiment=diff;"):
        check_analysis(AnalysisConfig(channels=True), "diff")
    for bad in (-1, 51):
        with pytest.raises(ConfigError, match=f"^analysis.top_images={bad} must be within 0..50"):
            check_analysis(AnalysisConfig(top_images=bad), "single")


def test_the_analysis_files_a_manifest_records_are_the_run_s_to_remove(tmp_path):
    from featvis_run.store.owned_paths import manifest_paths

    manifest = {"outputs": [], "analysis": {"files": ["channels.csv", "atlas/neck/p3/c0_0.jpg", "atlas/index.html"]}}
    assert manifest_paths(manifest) == ["channels.csv", "atlas/neck/p3/c0_0.jpg", "atlas/index.html"]
    assert manifest_paths({"outputs": [], "analysis": {"files": "channels.csv"}}) == []  # not a list: nothing
