"""Colour scales, colour bars, whole box labels and the box cap: pure functions checked against hand-computed values
and numpy references."""

import cv2
import numpy as np
import pytest

from featvis_run.drawing.boxes import draw_detections, label_boxes
from featvis_run.drawing.colorbar import BAR_MARGIN, BAR_WIDTH, add_colorbar, tick_values
from featvis_run.drawing.colour import colorize, colorize_signed, colormap_lut, to_uint8
from featvis_run.drawing.render import RenderOptions, render_map, render_map_scaled
from featvis_run.maps.geometry import Geometry
from featvis_run.maps.reduce import ReducedMap, reduce_channels
from featvis_run.maps.scales import RangeBook, ScaleSpec, image_ranges, value_range
from featvis_run.predictions import Detections

JET = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_JET).reshape(256, 3)


def _single(m: np.ndarray) -> ReducedMap:
    return ReducedMap(m[None].astype(np.float32), (), "squeeze_mean")


def test_fixed_range_maps_known_values_to_known_colours():
    m = np.array([[-1.0, 0.0, 0.5], [1.0, 2.0, np.nan]], np.float32)
    u8 = to_uint8(m, (0.0, 1.0))
    # floor(255 * clip((v - 0) / 1, 0, 1)): -1 clips to 0, 0.5 -> 127, 1 and 2 -> 255, NaN -> 0 (painted grey)
    assert u8.tolist() == [[0, 0, 127], [255, 255, 0]]
    pic = colorize(m, "jet", (0.0, 1.0))
    assert (pic[0, 2] == JET[127]).all() and (pic[1, 1] == JET[255]).all() and (pic[1, 2] == 128).all()


def test_per_map_default_keeps_min_max_scaling_and_reports_it():
    m = np.array([[2.0, 4.0], [6.0, 10.0]], np.float32)
    drawn = render_map_scaled(_single(m), (2, 2), Geometry.identity((2, 2)), None, RenderOptions(min_size=0))
    assert drawn.scale == (2.0, 10.0)
    np.testing.assert_array_equal(drawn.picture, colorize(m))  # unchanged from the per-map path


def test_two_maps_with_one_range_compare_by_colour():
    a = np.full((4, 4), 1.0, np.float32)
    b = np.full((4, 4), 3.0, np.float32)
    a[0, 0], b[0, 0] = 0.0, 4.0  # a spans 0..1, b spans 1..4 (b's 1 is... at a's max)
    ranges = image_ranges(ScaleSpec("per_image"), {"p3": a, "p4": b}, str)
    assert ranges == {"p3": (0.0, 4.0), "p4": (0.0, 4.0)}
    opts = RenderOptions(min_size=0, value_range=(0.0, 4.0))
    geom = Geometry.identity((4, 4))
    pa = render_map(_single(a), (4, 4), geom, None, opts)
    pb = render_map(_single(b), (4, 4), geom, None, opts)
    assert (pa[1, 1] == JET[63]).all()  # floor(255 * 1/4)
    assert (pb[1, 1] == JET[191]).all()  # floor(255 * 3/4)
    assert (pa[0, 0] == JET[0]).all() and (pb[0, 0] == JET[255]).all()
    # per_map: each its own min-max, so a's 1.0 and b's 4.0 would both be the top colour
    assert image_ranges(ScaleSpec("per_map"), {"p3": a, "p4": b}, str) == {"p3": None, "p4": None}


def test_per_level_and_per_run_ranges_from_a_statistics_pass():
    maps = [("p3", np.array([1.0, 5.0])), ("p4", np.array([-2.0, 0.5])), ("p3", np.array([0.0, 7.0]))]
    for mode, expected in (("per_level", {"p3": (0.0, 7.0), "p4": (-2.0, 0.5)}), ("per_run", {"run": (-2.0, 7.0)})):
        spec = ScaleSpec(mode)
        book = RangeBook(spec)
        for level, values in maps:
            book.add(spec.group(level), values)
        assert book.ranges() == expected
        got = image_ranges(spec, {"p3": maps[0][1], "p4": maps[1][1]}, str, book.ranges())
        assert got["p3"] == expected[spec.group("p3")] and got["p4"] == expected[spec.group("p4")]
    assert image_ranges(ScaleSpec("fixed", (0.0, 2.0)), {"p3": maps[0][1]}, str) == {"p3": (0.0, 2.0)}


def test_clip_percentile_matches_numpy_percentile():
    rng = np.random.default_rng(3)
    values = rng.standard_cauchy(size=(37, 41))
    values[0, 0] = np.nan
    finite = values[np.isfinite(values)]
    lo, hi = value_range([values], 99.0)
    assert lo == pytest.approx(np.percentile(finite, 1)) and hi == pytest.approx(np.percentile(finite, 99))
    assert value_range([values], None) == (finite.min(), finite.max())
    signed = value_range([values], 95.0, signed=True)
    assert signed == pytest.approx((-np.percentile(np.abs(finite), 95), np.percentile(np.abs(finite), 95)))
    # the statistics pass keeps every value when clipping, so percentiles over two batches equal one over all
    spec = ScaleSpec("per_run", clip_percentile=90.0)
    book = RangeBook(spec)
    book.add("run", values[:10])
    book.add("run", values[10:])
    assert book.ranges()["run"] == pytest.approx(tuple(np.percentile(finite, [10, 90])), rel=1e-5)


def test_signed_maps_stay_centred_on_zero_with_a_range():
    m = np.array([[-1.0, 0.0, 2.0]], np.float32)
    pic = colorize_signed(m, (-0.5, 4.0))  # peak = max(|lo|, |hi|) = 4: 0 is the middle colour
    lut = colormap_lut("jet", signed=True)
    assert (pic[0, 1] == lut[128]).all()  # round(127.5) = 128
    assert (pic[0, 2] == lut[int(np.round(127.5 + 127.5 * 0.5))]).all()
    drawn = render_map_scaled(_single(m), (1, 3), Geometry.identity((1, 3)), None, RenderOptions(signed=True))
    assert drawn.scale == (-2.0, 2.0)


def test_colour_bar_is_appended_with_the_colormap_from_top_to_bottom():
    pic = np.zeros((120, 80, 3), np.uint8)
    out = add_colorbar(pic, (0.0, 1.0), JET)
    assert out.shape[0] == 120 and out.shape[1] > 80 + BAR_WIDTH
    np.testing.assert_array_equal(out[:, :80], pic)
    col = 80 + 4 + BAR_WIDTH // 2
    assert (out[BAR_MARGIN, col] == JET[255]).all()  # hi at the top
    assert (out[120 - BAR_MARGIN - 1, col] == JET[0]).all()  # lo at the bottom
    assert (out[: BAR_MARGIN - 1, col] == 255).all()  # white margin above the bar
    labels = out[:, 80 + 4 + BAR_WIDTH + 6 :]
    assert (labels < 128).any()  # tick values are written
    assert tick_values(0.0, 1.0) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_render_with_colorbar_grows_the_picture_and_without_it_does_not():
    f = np.random.default_rng(0).normal(size=(4, 8, 8)).astype(np.float32)
    img = np.full((64, 64, 3), 100, np.uint8)
    geom = Geometry.identity((64, 64))
    plain = render_map(reduce_channels(f, "squeeze_mean"), (8, 8), geom, img, RenderOptions())
    barred = render_map(reduce_channels(f, "squeeze_mean"), (8, 8), geom, img, RenderOptions(colorbar=True))
    assert plain.shape == (64, 64, 3) and barred.shape[0] == 64 and barred.shape[1] > 64 + BAR_WIDTH
    np.testing.assert_array_equal(barred[:, :64], plain)


def test_heatmaps_of_an_image_are_drawn_at_its_size_for_every_level():
    img = np.full((48, 64, 3), 100, np.uint8)
    geom = Geometry.identity((48, 64))
    opts = RenderOptions(overlaid=False)
    for hw in ((24, 32), (6, 8), (3, 4)):
        f = np.random.default_rng(1).normal(size=(2, *hw)).astype(np.float32)
        assert render_map(reduce_channels(f, "squeeze_mean"), hw, geom, img, opts).shape == (48, 64, 3)
    sized = RenderOptions(overlaid=False, resize_shape=(30, 50))
    f = np.ones((2, 6, 8), np.float32)
    assert render_map(reduce_channels(f, "squeeze_mean"), (6, 8), geom, img, sized).shape == (30, 50, 3)


def _dets(n: int, names=("triangle", "circle")) -> Detections:
    boxes = np.array([[5 + 3 * i, 40, 30 + 3 * i, 70] for i in range(n)], np.float32)
    return Detections(boxes, np.linspace(0.9, 0.1, n).astype(np.float32), np.arange(n) % 2, names)


def test_box_cap_keeps_the_best_scores():
    d = _dets(30)
    kept = d.best(20)
    assert len(kept.scores) == 20 and kept.scores.min() == pytest.approx(np.sort(d.scores)[-20])
    assert d.best(None) is d and d.best(40) is d


def test_labels_are_whole_inside_the_picture_and_never_overlap():
    # a label at the right edge is moved left, not cut ("triangl"); overlapping labels move below or are left out
    box = (0, 0, 10, 20)
    spots = label_boxes([(90, 20, 99, 30), box, box, box], [(40, 12)] * 4, (50, 100))
    assert spots[0] == (60, 8, 99, 19)  # x moved to 100 - 40
    assert spots[1] == (0, 0, 39, 11)  # above the top edge: moved down inside
    assert spots[2] == (0, 21, 39, 32)  # second on the same box: below it
    assert spots[3] is None  # no free place: box drawn without a label
    placed = [s for s in spots if s is not None]
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_a_label_at_the_right_edge_is_drawn_whole():
    img = np.full((60, 100, 3), 128, np.uint8)
    d = Detections(np.array([[80, 20, 99, 50]], np.float32), np.array([0.9], np.float32), np.array([0]), ("triangle",))
    out = draw_detections(img, d)
    (tw, _), _ = cv2.getTextSize("triangle 0.90", cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    green = (out == (0, 255, 0)).all(axis=2)
    rows = np.where(green[:, 100 - tw - 3])[0]
    assert rows.size and rows.min() < 20  # the label's filled box starts tw + 3 pixels from the right edge
