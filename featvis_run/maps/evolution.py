"""How a level's maps change over a sequence of checkpoints (or training steps). Pure functions, no I/O.

- :func:`natural_key` orders names as people do: ``epoch_9`` before ``epoch_10``.
- :func:`reduce_fixed` reduces every frame with the channels chosen once on the reference (the last frame), so
  ``select_max`` and top-k frames show the same channels and can be compared.
- :func:`shared_range` is the one colour range (finite min and max over every frame) all frames of a level use.
- :func:`change_to_reference` is mean |A_t - A_ref| and linear CKA of each frame's map to the reference's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from featvis_run.maps.diff import linear_cka, mean_abs_diff, resize_to_common
from featvis_run.maps.reduce import ReducedMap, reduce_channels

__all__ = ["change_to_reference", "natural_key", "reduce_fixed", "shared_range"]


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key that compares runs of digits as numbers (``epoch_9`` < ``epoch_10`` < ``iter_100``)."""
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p)


def reduce_fixed(
    feat: np.ndarray, reducer: str, topk: int, channels: tuple[int, ...] | None, where: str = "feature map"
) -> ReducedMap:
    """Reduce ``feat`` as :func:`~featvis_run.maps.reduce.reduce_channels`, but with ``channels`` (chosen on the
    reference frame) kept for ``select_max`` and top-k (``none``); None chooses them on ``feat`` itself."""
    if channels is None or reducer not in ("select_max", "none") or (reducer == "none" and topk == -1):
        return reduce_channels(feat, reducer, topk, where=where)
    ref = reduce_channels(feat, reducer, topk, where=where)  # the same kind and note as the reference's
    idx = [c for c in channels if c < feat.shape[0]]
    return ReducedMap(feat[idx], tuple(idx), ref.reducer, ref.kind, ref.note)


def shared_range(maps: Sequence[np.ndarray]) -> tuple[float, float] | None:
    """(min, max) of the finite values of all ``maps``; None when none has a finite value."""
    lows, highs = [], []
    for m in maps:
        finite = m[np.isfinite(m)]
        if finite.size:
            lows.append(float(finite.min()))
            highs.append(float(finite.max()))
    if not lows:
        return None
    return min(lows), max(highs)


def change_to_reference(feats: Sequence[np.ndarray], ref: np.ndarray) -> list[dict[str, float | None]]:
    """For each (C, H, W) map: ``mean_abs_diff`` (mean |A_t - A_ref|) and ``cka`` (linear CKA) to ``ref``.

    Maps on another grid than ``ref`` are first brought to the smaller one; a measure that cannot be taken (other
    channel counts for the mean, non-finite values) is None.
    """
    out: list[dict[str, float | None]] = []
    for feat in feats:
        a, b, _ = resize_to_common(feat.astype(np.float32, copy=False), ref.astype(np.float32, copy=False))
        finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
        mad = mean_abs_diff(a, b) if finite and a.shape == b.shape else None
        cka = linear_cka(a, b) if finite else None
        out.append({"mean_abs_diff": mad, "cka": cka})
    return out
