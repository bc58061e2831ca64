"""Per-channel statistics of feature maps, streamed over a run with bounded memory. Pure functions, no I/O.

Each image contributes, per channel, the running sums of its finite cells: count, mean, M2 (the sum of squared
deviations from the mean), min, max and the count of cells <= 0. Two such sums merge exactly in float64 with Chan,
Golub and LeVeque's parallel rule (``delta = mean_b - mean_a``; ``mean = mean_a + delta * n_b / n``;
``M2 = M2_a + M2_b + delta^2 * n_a * n_b / n``), so a run never holds more than one image's maps, and shards of a
run merge into the table one process would have made (to rounding: sums in another order are not bit-identical).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

__all__ = [
    "DEAD_TOLERANCE",
    "ChannelMoments",
    "ChannelRow",
    "channel_rows",
    "dead_channels",
    "empty_moments",
    "merge_all",
    "merge_levels",
    "merge_moments",
    "moments_of",
]

#: a channel is dead when max - min <= DEAD_TOLERANCE * (1 + |max|) over every valid cell of every image
DEAD_TOLERANCE = 1e-6

K = TypeVar("K")


@dataclass(frozen=True)
class ChannelMoments:
    """The mergeable sums of C channels: float64/int64 arrays of shape (C,). ``count`` counts finite cells;
    ``minimum``/``maximum`` are +inf/-inf for a channel without one."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    nonpositive: np.ndarray

    @property
    def channels(self) -> int:
        """How many channels these sums cover."""
        return int(self.count.shape[0])


@dataclass(frozen=True)
class ChannelRow:
    """One channel's statistics over every finite cell counted (None where it has no cell)."""

    channel: int
    cells: int
    mean: float | None
    std: float | None  # population standard deviation: sqrt(M2 / cells)
    minimum: float | None
    maximum: float | None
    sparsity: float | None  # fraction of cells <= 0
    dead: bool


def empty_moments(channels: int) -> ChannelMoments:
    """The sums of ``channels`` channels over no cell (the identity of :func:`merge_moments`)."""
    if channels < 0:
        raise ValueError(f"channels must be >= 0, got {channels}")
    zeros = np.zeros(channels, np.float64)
    return ChannelMoments(
        count=np.zeros(channels, np.int64),
        mean=zeros.copy(),
        m2=zeros.copy(),
        minimum=np.full(channels, np.inf),
        maximum=np.full(channels, -np.inf),
        nonpositive=np.zeros(channels, np.int64),
    )


def moments_of(cells: np.ndarray) -> ChannelMoments:
    """The sums of a (C, ...) array's channels over their finite values (two passes in float64: mean, then M2)."""
    if cells.ndim < 1:
        raise ValueError(f"cells must have a channel axis, got shape {cells.shape}")
    x = np.asarray(cells).reshape(cells.shape[0], -1)
    finite = np.isfinite(x)
    if finite.all():
        n = np.full(x.shape[0], x.shape[1], np.int64)
        mean = x.mean(axis=1, dtype=np.float64) if x.shape[1] else np.zeros(x.shape[0])
        dev = x.astype(np.float64) - mean[:, None]
        lo = x.min(axis=1).astype(np.float64) if x.shape[1] else np.full(x.shape[0], np.inf)
        hi = x.max(axis=1).astype(np.float64) if x.shape[1] else np.full(x.shape[0], -np.inf)
        nonpos = np.count_nonzero(x <= 0, axis=1).astype(np.int64)
    else:
        n = finite.sum(axis=1).astype(np.int64)
        mean = np.where(finite, x, 0).sum(axis=1, dtype=np.float64) / np.maximum(n, 1)
        dev = np.where(finite, x.astype(np.float64) - mean[:, None], 0.0)
        lo = np.where(finite, x, np.inf).min(axis=1).astype(np.float64)
        hi = np.where(finite, x, -np.inf).max(axis=1).astype(np.float64)
        nonpos = np.count_nonzero(finite & (x <= 0), axis=1).astype(np.int64)
    m2 = np.einsum("ij,ij->i", dev, dev)
    return ChannelMoments(n, mean, m2, lo, hi, nonpos)


def merge_moments(a: ChannelMoments, b: ChannelMoments) -> ChannelMoments:
    """The sums over the cells of ``a`` and ``b`` together (Chan et al.'s parallel rule, float64)."""
    if a.channels != b.channels:
        raise ValueError(f"cannot merge the sums of {a.channels} and {b.channels} channels")
    na, nb = a.count.astype(np.float64), b.count.astype(np.float64)
    n = na + nb
    safe = np.maximum(n, 1.0)
    delta = b.mean - a.mean
    mean = np.where(n > 0, a.mean + delta * (nb / safe), 0.0)
    m2 = np.where(n > 0, a.m2 + b.m2 + delta * delta * (na * nb / safe), 0.0)
    return ChannelMoments(
        count=a.count + b.count,
        mean=mean,
        m2=m2,
        minimum=np.minimum(a.minimum, b.minimum),
        maximum=np.maximum(a.maximum, b.maximum),
        nonpositive=a.nonpositive + b.nonpositive,
    )


def merge_levels(
    a: Mapping[K, ChannelMoments], b: Mapping[K, ChannelMoments], names: Mapping[K, str] | None = None
) -> dict[K, ChannelMoments]:
    """Per level, the sums of ``a`` and ``b`` merged (a level in one only is kept as it is), in ``a``'s order then
    ``b``'s new levels. Raises ValueError naming the level when the two count different channels."""
    out = dict(a)
    for key, moments in b.items():
        if key in out:
            if out[key].channels != moments.channels:
                name = (names or {}).get(key, str(key))
                raise ValueError(
                    f"{name} has {out[key].channels} channels in one part and {moments.channels} in another"
                )
            out[key] = merge_moments(out[key], moments)
        else:
            out[key] = moments
    return out


def dead_channels(moments: ChannelMoments, tolerance: float = DEAD_TOLERANCE) -> np.ndarray:
    """Which channels never vary: max - min <= tolerance * (1 + |max|) (False for a channel without a cell)."""
    spread = moments.maximum - moments.minimum
    with np.errstate(invalid="ignore"):
        return (moments.count > 0) & (spread <= tolerance * (1.0 + np.abs(moments.maximum)))


def channel_rows(moments: ChannelMoments, tolerance: float = DEAD_TOLERANCE) -> list[ChannelRow]:
    """One row per channel: cells, mean, std, min, max, sparsity and whether it is dead."""
    dead = dead_channels(moments, tolerance)
    rows = []
    for c in range(moments.channels):
        n = int(moments.count[c])
        if n == 0:
            rows.append(ChannelRow(c, 0, None, None, None, None, None, False))
            continue
        rows.append(
            ChannelRow(
                channel=c,
                cells=n,
                mean=float(moments.mean[c]),
                std=float(np.sqrt(max(moments.m2[c], 0.0) / n)),
                minimum=float(moments.minimum[c]),
                maximum=float(moments.maximum[c]),
                sparsity=float(moments.nonpositive[c]) / n,
                dead=bool(dead[c]),
            )
        )
    return rows


def merge_all(parts: Iterable[ChannelMoments], channels: int) -> ChannelMoments:
    """The sums of every part, merged left to right from :func:`empty_moments`."""
    total = empty_moments(channels)
    for part in parts:
        total = merge_moments(total, part)
    return total
