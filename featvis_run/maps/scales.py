"""Colour ranges shared between maps (``output.scale``). Pure functions over arrays, no I/O.

A range is (lo, hi): colours are mapped from lo to hi and values outside are clipped. Without percentile clipping it
is the min and max of the finite values; with ``clip_percentile`` p (50 < p <= 100) it is their
``numpy.percentile`` at 100 - p and at p (linear interpolation), e.g. p=99: the 1st..99th percentiles. A signed
map's range is centred on 0: (-m, m) with m the max of |values| (or their p-th percentile).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from featvis_run.maps.modes import ScaleMode

__all__ = ["RangeBook", "ScaleSpec", "image_ranges", "value_range"]

Range = tuple[float, float]


@dataclass(frozen=True)
class ScaleSpec:
    """``output.scale``, ``output.scale_range`` and ``output.clip_percentile``, validated."""

    mode: str = ScaleMode.per_map.value
    fixed: Range | None = None
    clip_percentile: float | None = None

    @property
    def needs_stats(self) -> bool:
        """True for the modes whose range comes from every map of the run (a statistics pass before drawing)."""
        return self.mode in (ScaleMode.per_level.value, ScaleMode.per_run.value)

    def group(self, level: str) -> str:
        """The run-wide group a map of ``level`` belongs to (``per_level``: its level, ``per_run``: one group)."""
        return level if self.mode == ScaleMode.per_level.value else "run"


def _finite(values: Iterable[np.ndarray]) -> np.ndarray:
    parts = [np.asarray(v, np.float64).ravel() for v in values]
    flat = np.concatenate(parts) if parts else np.zeros(0)
    return flat[np.isfinite(flat)]


def value_range(
    values: Iterable[np.ndarray], clip_percentile: float | None = None, signed: bool = False
) -> Range | None:
    """The range of the finite values of ``values`` (see the module docstring); None when there are none."""
    finite = _finite(values)
    if not finite.size:
        return None
    if signed:
        mags = np.abs(finite)
        peak = float(np.percentile(mags, clip_percentile)) if clip_percentile is not None else float(mags.max())
        return (-peak, peak)
    if clip_percentile is None:
        return (float(finite.min()), float(finite.max()))
    lo, hi = np.percentile(finite, [100.0 - clip_percentile, clip_percentile])
    return (float(lo), float(hi))


@dataclass
class RangeBook:
    """Collects the maps of a run by group during a statistics pass, then gives each group's range.

    Without percentile clipping only a running min and max (or max |value|) is kept per group; with it the finite
    values are kept (the reduced 2-D maps, not the features), since percentiles need them all."""

    spec: ScaleSpec
    signed: bool = False
    _values: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, group: str, values: np.ndarray) -> None:
        """Count ``values`` (any shape) in ``group``."""
        finite = _finite([values])
        if not finite.size:
            return
        kept = self._values.setdefault(group, [])
        if self.spec.clip_percentile is not None:
            kept.append(finite.astype(np.float32))
            return
        lo, hi = float(finite.min()), float(finite.max())
        if kept:
            lo, hi = min(lo, float(kept[0][0])), max(hi, float(kept[0][1]))
        kept[:] = [np.array([lo, hi])]

    def ranges(self) -> dict[str, Range | None]:
        """Every group's range."""
        return {g: value_range(v, self.spec.clip_percentile, self.signed) for g, v in self._values.items()}


def image_ranges(
    spec: ScaleSpec,
    maps: Mapping[Hashable, np.ndarray],
    level_of: Callable[[Hashable], str],
    run_ranges: Mapping[str, Range | None] | None = None,
    signed: bool = False,
) -> dict[Hashable, Range | None]:
    """The fixed colour range of each of one image's drawn maps (None: min-max scaled on its own when drawn).

    Args:
        spec: the scale settings.
        maps: the image's drawn (reduced) maps by key.
        level_of: the level name of a key (``per_level`` groups by it).
        run_ranges: the run-wide ranges of a statistics pass (``per_level``, ``per_run``), by group.
        signed: ranges centred on 0.
    """
    mode, clip = spec.mode, spec.clip_percentile
    if mode == ScaleMode.fixed.value:
        return dict.fromkeys(maps, spec.fixed)
    if mode == ScaleMode.per_image.value:
        shared = value_range(maps.values(), clip, signed)
        return dict.fromkeys(maps, shared)
    if spec.needs_stats:
        ranges = run_ranges or {}
        return {k: ranges.get(spec.group(level_of(k))) for k in maps}
    if clip is None:
        return dict.fromkeys(maps)
    return {k: value_range([m], clip, signed) for k, m in maps.items()}
