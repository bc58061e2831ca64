"""One level of two models on one image: both sides cropped and reduced, the diff computed and reduced, their
colour ranges picked (A and B always share one), and the diff picture and the A | B | diff panel drawn."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import numpy as np

from featvis_run.drawing.colour import finite_range
from featvis_run.drawing.layout import contact_sheet
from featvis_run.drawing.render import RenderOptions, render_map_scaled
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.diff import compare_levels, diff_map, resize_to_common
from featvis_run.maps.geometry import Geometry, crop_valid
from featvis_run.maps.modes import ScaleMode
from featvis_run.maps.reduce import ReducedMap, reduce_channels, standardize
from featvis_run.maps.scales import RangeBook, ScaleSpec, image_ranges, value_range

__all__ = [
    "DIFF_LABELS",
    "DiffSide",
    "ReducedLevel",
    "add_diff_stats",
    "diff_side",
    "draw_level",
    "draw_reduced_level",
    "level_numbers",
    "level_ranges",
    "reduce_level",
    "side_labels",
]

DIFF_LABELS = {"abs": "|A-B|", "signed": "A-B", "relative": "|A-B|/(|A|+|B|)"}


def side_labels(name_a: str, ckpt_a: str | None, name_b: str, ckpt_b: str | None) -> tuple[str, str]:
    """How the two models of a diff are told apart in pictures and the report: their model names, or, for two
    checkpoints of one model, the checkpoint stems (``epoch_1`` | ``epoch_12``; ``random init`` without one), with
    the folder when the stems alike (``run1/latest``)."""
    if name_a != name_b:
        return name_a, name_b

    def stem(ckpt: str | None, parts: int) -> str:
        if not ckpt:
            return "random init"
        path = PurePath(ckpt)
        return "/".join([*path.parent.parts[-(parts - 1) :], path.stem] if parts > 1 else [path.stem])

    for parts in (1, 2):
        a, b = stem(ckpt_a, parts), stem(ckpt_b, parts)
        if a != b:
            return a, b
    return name_a, name_b


@dataclass(frozen=True)
class DiffSide:
    """One model's cropped (C, H, W) map of a level, with what is needed to draw it on the image."""

    name: str
    feat: np.ndarray
    full_hw: tuple[int, int]
    geometry: Geometry


def diff_side(name: str, maps: np.ndarray, geometry: Geometry, use_norm: bool) -> DiffSide:
    """One model's map of a level cropped to its valid cells (and standardized with ``use_norm``)."""
    cropped = crop_valid(maps, geometry)
    return DiffSide(name, standardize(cropped) if use_norm else cropped, tuple(maps.shape[-2:]), geometry)


def _single_reducer(settings: DrawSettings) -> tuple[str, str | None]:
    if settings.reducer != "none":
        return settings.reducer, None
    return "squeeze_mean", "channel counts differ, so top-k channels cannot be paired: diffed squeeze_mean maps"


@dataclass(frozen=True)
class ReducedLevel:
    """One level of two models on one image, reduced: the diff, each side, and where the diff lies on the image."""

    level: str
    a: DiffSide
    b: DiffSide
    numbers: dict[str, Any]
    diff: ReducedMap
    side_a: ReducedMap
    side_b: ReducedMap
    full_hw: tuple[int, int]
    geometry: Geometry


def reduce_level(level: str, a: DiffSide, b: DiffSide, settings: DrawSettings, mode: str) -> ReducedLevel:
    """Compare one level of two models (numbers for the manifest) and reduce the diff and both sides."""
    cmp = compare_levels(a.feat, b.feat)
    note = None
    if cmp.elementwise:
        ra, rb, _ = resize_to_common(a.feat, b.feat)
        d = diff_map(ra, rb, mode)
        reduced = reduce_channels(d, settings.reducer, settings.topk, where=f"diff/{level}")
    else:
        reducer, note = _single_reducer(settings)
        ma = reduce_channels(a.feat, reducer).maps
        mb = reduce_channels(b.feat, reducer).maps
        ma, mb, _ = resize_to_common(ma, mb)
        reduced = ReducedMap(diff_map(ma, mb, mode), (), f"{reducer} diff")
        note = note or f"channel counts differ ({a.feat.shape[0]} vs {b.feat.shape[0]}): diffed {reducer} maps"
    if cmp.resized_to is None:  # both maps on A's grid: exact alignment with the image
        full_hw, geometry = a.full_hw, a.geometry
    else:  # a common grid that covers the image (each map was cropped to its valid region)
        full_hw, geometry = tuple(reduced.maps.shape[-2:]), Geometry.identity(a.geometry.ori_hw)
    sides = [
        reduce_channels(side.feat, settings.reducer, settings.topk, where=f"{side.name}/{level}") for side in (a, b)
    ]
    numbers = {**cmp.to_dict(), "note": note}
    return ReducedLevel(level, a, b, numbers, reduced, sides[0], sides[1], full_hw, geometry)


def level_ranges(
    spec: ScaleSpec, levels: Sequence[ReducedLevel], mode: str, run_ranges: dict[str, Any] | None = None
) -> dict[tuple[str, str], tuple[float, float] | None]:
    """The colour ranges of one image's diff pictures and A/B panels, by (``diff`` or ``sides``, level).

    A and B of a level always share one range (per_map: over both maps), so the panel compares them by colour;
    diffs have their own (centred on 0 when signed). Run-wide groups are ``diff:<group>`` and ``sides:<group>``."""
    out: dict[tuple[str, str], tuple[float, float] | None] = {}
    diffs = {lv.level: lv.diff.maps for lv in levels}
    for level, rng in image_ranges(spec, diffs, str, _prefixed(run_ranges, "diff:"), mode == "signed").items():
        out[("diff", str(level))] = rng
    if spec.mode == ScaleMode.per_map.value:  # A and B together, each level on its own
        sides = {lv.level: value_range([lv.side_a.maps, lv.side_b.maps], spec.clip_percentile) for lv in levels}
        return out | {("sides", lv): rng for lv, rng in sides.items()}
    both = {lv.level: np.concatenate([lv.side_a.maps.ravel(), lv.side_b.maps.ravel()]) for lv in levels}
    for level, rng in image_ranges(spec, both, str, _prefixed(run_ranges, "sides:")).items():
        out[("sides", str(level))] = rng
    return out


def _prefixed(ranges: dict[str, Any] | None, prefix: str) -> dict[str, Any] | None:
    if ranges is None:
        return None
    return {k[len(prefix) :]: v for k, v in ranges.items() if k.startswith(prefix)}


def add_diff_stats(books: dict[str, RangeBook], levels: Sequence[ReducedLevel]) -> None:
    """Count one image's diffs and sides in the statistics pass (``books``: ``diff`` and ``sides``)."""
    for lv in levels:
        books["diff"].add(books["diff"].spec.group(lv.level), lv.diff.maps)
        for side in (lv.side_a, lv.side_b):
            books["sides"].add(books["sides"].spec.group(lv.level), side.maps)


def draw_level(
    image: np.ndarray,
    level: str,
    a: DiffSide,
    b: DiffSide,
    settings: DrawSettings,
    mode: str,
    ranges: tuple[tuple[float, float] | None, tuple[float, float] | None] | None = None,
) -> tuple[dict[str, Any], ReducedMap, np.ndarray, np.ndarray]:
    """Compare one level of two models on one image.

    Args:
        image: the original BGR image.
        level: the level's mapping name.
        a: model A's side (cropped map and placement); b: model B's.
        settings: how maps are reduced and drawn.
        mode: a :class:`~featvis_run.maps.modes.DiffMode` value.
        ranges: (diff range, A/B range); None: picked by ``settings.scale`` for this level alone.

    Returns:
        (numbers for the manifest, with the ``scale`` of the diff and ``panel_scale`` of A and B; the reduced diff,
        the diff picture, the A | B | diff panel).
    """
    lv = reduce_level(level, a, b, settings, mode)
    if ranges is None:
        found = level_ranges(settings.scale, [lv], mode)
        ranges = (found[("diff", level)], found[("sides", level)])
    numbers, diff_picture, panel = draw_reduced_level(image, lv, settings, mode, ranges)
    return numbers, lv.diff, diff_picture, panel


def _signed(rng: tuple[float, float] | None) -> tuple[float, float] | None:
    if rng is None:
        return None
    peak = max(abs(rng[0]), abs(rng[1]))
    return (-peak, peak)


def level_numbers(
    lv: ReducedLevel, mode: str, ranges: tuple[tuple[float, float] | None, tuple[float, float] | None]
) -> dict[str, Any]:
    """The numbers :func:`draw_reduced_level` records, for a level that is stored but not drawn
    (``output.pictures=maps``): the diff's colour range picked as drawing would (the given range, else its finite
    min-max; centred on 0 when signed; None for a grid scaled per tile)."""
    rng = ranges[0]
    if rng is None and lv.diff.kind != "grid":
        rng = finite_range(lv.diff.maps)
    rng = _signed(rng) if mode == "signed" else rng
    return {**lv.numbers, "scale": rng, "panel_scale": ranges[1]}


def draw_reduced_level(
    image: np.ndarray,
    lv: ReducedLevel,
    settings: DrawSettings,
    mode: str,
    ranges: tuple[tuple[float, float] | None, tuple[float, float] | None],
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Draw a reduced level: the diff picture (its own range) and the A | B | diff panel (A and B in one range)."""
    opts: RenderOptions = settings.render
    diff_opts = dataclasses.replace(opts, signed=mode == "signed", value_range=ranges[0])
    diff_drawn = render_map_scaled(lv.diff, lv.full_hw, lv.geometry, image, diff_opts)
    side_opts = dataclasses.replace(opts, value_range=ranges[1])
    side_pictures = [
        render_map_scaled(red, side.full_hw, side.geometry, image, side_opts).picture
        for red, side in ((lv.side_a, lv.a), (lv.side_b, lv.b))
    ]
    labels = [f"A {lv.a.name} {lv.level}", f"B {lv.b.name} {lv.level}", f"{DIFF_LABELS[mode]} {lv.level}"]
    panel = contact_sheet([*side_pictures, diff_drawn.picture], labels, rows=1)
    numbers = {**lv.numbers, "scale": diff_drawn.scale, "panel_scale": ranges[1]}
    return numbers, diff_drawn.picture, panel
