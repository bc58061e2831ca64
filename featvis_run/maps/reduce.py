"""Channel reductions and normalization over (C, H, W) float arrays. Pure functions, no I/O.

Semantics follow MMRazor's feature visualization (and MMEngine's ``Visualizer.draw_featmap``):
``pixel_wise_max`` is the max over channels, ``squeeze_mean`` the mean over channels, ``select_max`` the channel
with the largest spatial sum, and ``none`` the ``topk`` channels ranked by spatial sum (``topk=-1``: draw a
1- or 3-channel map as it is). ``eigencam`` projects on the first principal component (:mod:`featvis_run.maps.cam`);
``gradcam`` maps are CAMs computed with the model and drawn as they are.

Non-finite values (NaN, infinities: a diverged or broken model) are treated as missing: reductions ignore them, a
position missing in every channel stays NaN, and channels are ranked by the sum of their finite values.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from featvis_run.errors import ConfigError
from featvis_run.maps.cam import eigen_cam
from featvis_run.maps.modes import ReducerName

__all__ = ["ReducedMap", "reduce_channels", "standardize", "topk_channels"]


@dataclass(frozen=True)
class ReducedMap:
    """The drawable result of a reduction.

    ``maps`` is (K, H, W): K=1 for the channel reductions, K=topk for ``none``, and K=C (1 or 3) for ``topk=-1``.
    ``channels`` are the source channel indices shown (empty for reductions that mix all channels).
    ``kind`` is how to draw it: ``single`` (one heatmap), ``grid`` (one labelled tile per channel) or ``image``
    (a 3-channel map shown as RGB). ``note`` says when a request was adjusted (e.g. topk clamped to C).
    """

    maps: np.ndarray
    channels: tuple[int, ...]
    reducer: str
    kind: str = "single"
    note: str | None = None


def _check_chw(feat: np.ndarray) -> None:
    if feat.ndim != 3:
        raise ConfigError(f"expected a (C, H, W) feature map, got shape {tuple(feat.shape)}")


def _missing_as_nan(feat: np.ndarray) -> tuple[np.ndarray, bool]:
    """``feat`` with infinities turned into NaN, and whether anything was missing."""
    finite = np.isfinite(feat)
    if finite.all():
        return feat, False
    return np.where(finite, feat, np.nan).astype(np.float32), True


def standardize(feat: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Standardize each channel of a (C, H, W) map to mean 0 and (sample) std 1, as MMRazor's ``norm`` does
    (over finite values; missing ones stay NaN)."""
    _check_chw(feat)
    c = feat.shape[0]
    flat, missing = _missing_as_nan(feat.reshape(c, -1).astype(np.float32))
    if not missing:
        mean = flat.mean(axis=1, keepdims=True)
        std = flat.std(axis=1, ddof=1 if flat.shape[1] > 1 else 0, keepdims=True)
        return ((flat - mean) / (std + eps)).reshape(feat.shape)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        count = np.isfinite(flat).sum(axis=1, keepdims=True)
        mean = np.nanmean(flat, axis=1, keepdims=True)
        std = np.nanstd(flat, axis=1, ddof=1, keepdims=True) if flat.shape[1] > 1 else np.zeros_like(mean)
        std = np.where(count > 1, std, 0.0)
        return ((flat - mean) / (std + eps)).astype(np.float32).reshape(feat.shape)


def topk_channels(feat: np.ndarray, k: int) -> tuple[int, ...]:
    """Indices of the ``k`` channels with the largest spatial sums (of their finite values), largest first (ties:
    lower index first)."""
    _check_chw(feat)
    flat = feat.reshape(feat.shape[0], -1)
    if np.isfinite(flat).all():
        sums = flat.sum(axis=1, dtype=np.float64)
    else:
        sums = np.where(np.isfinite(flat), flat, 0.0).sum(axis=1, dtype=np.float64)
    order = np.argsort(-sums, kind="stable")
    return tuple(int(i) for i in order[:k])


def reduce_channels(feat: np.ndarray, reducer: str, topk: int = 20, where: str = "feature map") -> ReducedMap:
    """Reduce a (C, H, W) map to something drawable.

    Args:
        feat: the (C, H, W) map.
        reducer: a :class:`~featvis_run.maps.modes.ReducerName` value.
        topk: channels to keep with ``none`` (-1: a 1- or 3-channel map as it is); ignored by the others.
        where: the map's name in error messages and notes.

    Returns:
        The :class:`ReducedMap`; a ConfigError for an impossible request.
    """
    _check_chw(feat)
    c = feat.shape[0]
    if reducer in ("pixel_wise_max", "squeeze_mean"):
        clean, missing = _missing_as_nan(feat)
        if not missing:
            out = feat.max(axis=0, keepdims=True) if reducer == "pixel_wise_max" else feat.mean(axis=0, keepdims=True)
            return ReducedMap(out.astype(np.float32, copy=False), (), reducer)
        with warnings.catch_warnings():  # all-NaN positions stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            fn = np.nanmax if reducer == "pixel_wise_max" else np.nanmean
            return ReducedMap(fn(clean, axis=0, keepdims=True).astype(np.float32), (), reducer)
    if reducer == ReducerName.eigencam.value:
        return ReducedMap(eigen_cam(feat), (), reducer)
    if reducer == ReducerName.gradcam.value:  # the map is a CAM already (one channel)
        if c != 1:
            raise ConfigError(f"reducer=gradcam draws CAMs, but {where} has {c} channels (a CAM has 1)")
        return ReducedMap(feat.astype(np.float32, copy=False), (), reducer)
    if reducer == "select_max":
        (idx,) = topk_channels(feat, 1)
        return ReducedMap(feat[idx : idx + 1], (idx,), reducer)
    if reducer != ReducerName.none.value:
        raise ConfigError(f"reducer={reducer!r} is unknown; choose one of {', '.join(r.value for r in ReducerName)}")
    if topk == -1:
        if c not in (1, 3):
            raise ConfigError(
                f"topk=-1 draws a map as it is, which needs 1 or 3 channels, but {where} has {c}: "
                "set reducer=pixel_wise_max, squeeze_mean or select_max, or a positive topk"
            )
        return ReducedMap(feat, tuple(range(c)), reducer, kind="image" if c == 3 else "single")
    if topk <= 0:
        raise ConfigError(f"topk={topk} is invalid: use a positive number of channels, or -1 (1- or 3-channel maps)")
    note = None
    if topk > c:
        note = f"topk={topk} clamped to the {c} channels of {where}"
    idx = topk_channels(feat, min(topk, c))
    return ReducedMap(feat[list(idx)], idx, reducer, kind="grid", note=note)
