"""Compare two models' feature maps of one image, level by level. Pure functions over (C, H, W) arrays, no I/O.

Element-wise measures (``diff_map``, ``mean_abs_diff``, ``cosine_similarity``) need equal shapes; maps on different
grids are first brought to the smaller grid with ``resize_to_common``. Linear CKA (Kornblith et al., 2019) only needs
equal spatial sizes: samples are spatial positions and features are channels, so channel counts may differ.

Degenerate CKA inputs (a map whose every channel is constant over positions, e.g. all zeros, or a 1 x 1 grid) follow
the convention of ``cosine_similarity`` for all-zero vectors: 1.0 when both maps are constant (after centering both
representations are the same zero representation) and 0.0 when exactly one is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from featvis_run.errors import ConfigError
from featvis_run.maps.modes import DiffMode

__all__ = [
    "LevelComparison",
    "compare_levels",
    "cosine_similarity",
    "diff_map",
    "linear_cka",
    "linear_cka_gram",
    "mean_abs_diff",
    "resize_to_common",
]

# A channel counts as constant when its centered norm is below this fraction of its raw norm (rounding residue).
_CONST_RTOL = 1e-10


def _check_chw(feat: np.ndarray, name: str) -> None:
    if feat.ndim != 3 or 0 in feat.shape:
        raise ConfigError(f"{name}: expected a non-empty (C, H, W) feature map, got shape {tuple(feat.shape)}")


def _check_same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    _check_chw(a, "a")
    _check_chw(b, "b")
    if a.shape != b.shape:
        raise ConfigError(
            f"{what} needs equal (C, H, W) shapes, got {tuple(a.shape)} and {tuple(b.shape)}: bring both maps to one "
            "grid with resize_to_common first; different channel counts cannot be compared element-wise "
            "(use linear_cka)"
        )


def _resize_chw(feat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize each channel of a (C, H, W) map to ``size`` = (H, W) with area averaging."""
    if feat.shape[1:] == size:
        return feat
    if feat.dtype not in (np.float32, np.float64):
        feat = feat.astype(np.float32)
    h, w = size
    # OpenCV resizes up to 4 interleaved channels per call (INTER_AREA with non-integer scales): 4x fewer calls.
    chunks = []
    for start in range(0, feat.shape[0], 4):
        hwc = np.ascontiguousarray(feat[start : start + 4].transpose(1, 2, 0))
        out = cv2.resize(hwc, (w, h), interpolation=cv2.INTER_AREA)
        chunks.append(out.reshape(h, w, -1).transpose(2, 0, 1))
    return np.ascontiguousarray(np.concatenate(chunks))


def resize_to_common(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int] | None]:
    """Bring two (C, H, W) maps to the smaller grid (min H, min W) with INTER_AREA; None if already equal."""
    _check_chw(a, "a")
    _check_chw(b, "b")
    if a.shape[1:] == b.shape[1:]:
        return a, b, None
    target = (min(a.shape[1], b.shape[1]), min(a.shape[2], b.shape[2]))
    return _resize_chw(a, target), _resize_chw(b, target), target


def diff_map(a: np.ndarray, b: np.ndarray, mode: str, eps: float = 1e-6) -> np.ndarray:
    """Element-wise difference of equal-shape maps: ``abs`` |a-b|, ``signed`` a-b, ``relative`` |a-b|/(|a|+|b|+eps)."""
    if mode not in {m.value for m in DiffMode}:
        raise ConfigError(f"diff mode {mode!r} is unknown: use one of {', '.join(m.value for m in DiffMode)}")
    _check_same_shape(a, b, f"diff_map(mode={mode!r})")
    dtype = np.result_type(a.dtype, b.dtype, np.float32)
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    if mode == "signed":
        return a - b
    delta = np.abs(a - b)
    if mode == "abs":
        return delta
    if not eps > 0:
        raise ConfigError(f"relative diff eps={eps!r} must be > 0 (it keeps 0/0 out where both maps are 0), e.g. 1e-6")
    return delta / (np.abs(a) + np.abs(b) + dtype.type(eps))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of |a - b| over all elements of two equal-shape maps, in float64."""
    _check_same_shape(a, b, "mean_abs_diff")
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the flattened maps in float64; 1.0 if both are all-zero, 0.0 if exactly one is."""
    _check_same_shape(a, b, "cosine_similarity")
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 1.0 if nx == ny else 0.0
    return float(np.clip(np.dot(x / nx, y / ny), -1.0, 1.0))


def _samples(feat: np.ndarray) -> np.ndarray:
    """(C, H, W) map -> (H*W, C) float64 sample matrix (rows = positions, columns = channels)."""
    return feat.reshape(feat.shape[0], -1).T.astype(np.float64)


def _center(x: np.ndarray) -> np.ndarray | None:
    """Center the columns of an (n, C) matrix, zero constant columns, scale to unit Frobenius norm; None if constant."""
    xc = x - x.mean(axis=0, keepdims=True)
    col_norm = np.linalg.norm(xc, axis=0)
    xc[:, col_norm <= _CONST_RTOL * np.linalg.norm(x, axis=0)] = 0.0
    total = float(np.linalg.norm(xc))
    return None if total == 0.0 else xc / total


def _degenerate(xc: np.ndarray | None, yc: np.ndarray | None) -> float | None:
    """The documented CKA for constant maps: 1.0 if both are constant, 0.0 if one is, None otherwise."""
    if xc is None or yc is None:
        return 1.0 if xc is None and yc is None else 0.0
    return None


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA between two (C, H, W) maps with equal H, W (channels may differ); positions are the samples.

    Uses ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) in channel space; the equal n x n Gram form is used only
    when it is cheaper (fewer positions than channels), so memory never exceeds O(C^2). See the module docstring for
    constant maps.
    """
    _check_chw(a, "a")
    _check_chw(b, "b")
    if a.shape[1:] != b.shape[1:]:
        raise ConfigError(
            f"linear_cka needs equal spatial sizes, got {tuple(a.shape)} and {tuple(b.shape)}: "
            "bring both maps to one grid with resize_to_common first"
        )
    xc, yc = _center(_samples(a)), _center(_samples(b))
    special = _degenerate(xc, yc)
    if special is not None:
        return special
    n, ca, cb = xc.shape[0], xc.shape[1], yc.shape[1]
    if n * (ca + cb) < ca * ca + cb * cb + ca * cb:
        k, lm = xc @ xc.T, yc @ yc.T
        num, den = float(np.sum(k * lm)), float(np.linalg.norm(k) * np.linalg.norm(lm))
    else:
        num = float(np.sum((yc.T @ xc) ** 2))
        den = float(np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    return float(min(max(num / den, 0.0), 1.0))


def linear_cka_gram(x: np.ndarray, y: np.ndarray) -> float:
    """Reference linear CKA via HSIC(K, L) = tr(K H L H) / (n-1)^2 with K = X X^T, L = Y Y^T. O(n^2): tests only.

    ``x`` and ``y`` are (n, C) sample matrices, or (C, H, W) maps (converted like ``linear_cka`` does).
    """
    x = _samples(x) if x.ndim == 3 else np.asarray(x, dtype=np.float64)
    y = _samples(y) if y.ndim == 3 else np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ConfigError(f"linear_cka_gram needs (n, C) matrices with equal n, got {x.shape} and {y.shape}")
    n = x.shape[0]
    h = np.eye(n) - np.full((n, n), 1.0 / n)

    def hsic(k: np.ndarray, lm: np.ndarray) -> float:
        return float(np.trace(k @ h @ lm @ h)) / (n - 1) ** 2 if n > 1 else 0.0

    k, lm = x @ x.T, y @ y.T
    kk, ll = hsic(k, k), hsic(lm, lm)
    scale_k, scale_l = max(float(np.trace(k)), 1e-300), max(float(np.trace(lm)), 1e-300)
    const_x, const_y = kk <= _CONST_RTOL * scale_k**2, ll <= _CONST_RTOL * scale_l**2
    if const_x or const_y:
        return 1.0 if const_x and const_y else 0.0
    return float(hsic(k, lm) / np.sqrt(kk * ll))


@dataclass(frozen=True)
class LevelComparison:
    """How two models' maps of one level compare.

    ``shape_a``/``shape_b`` are the original (C, H, W) shapes; ``resized_to`` the common (H, W) grid when they
    differed. ``elementwise`` is False when channel counts differ; ``mean_abs_diff`` and ``cosine`` are then None.
    """

    mean_abs_diff: float | None
    cosine: float | None
    cka: float
    shape_a: tuple[int, int, int]
    shape_b: tuple[int, int, int]
    resized_to: tuple[int, int] | None
    elementwise: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists)."""
        out = asdict(self)
        for key in ("shape_a", "shape_b", "resized_to"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out


def compare_levels(a: np.ndarray, b: np.ndarray) -> LevelComparison:
    """Compare two (C, H, W) maps on their common grid: CKA always, mean |a-b| and cosine when channels match."""
    ra, rb, resized = resize_to_common(a, b)
    elementwise = a.shape[0] == b.shape[0]
    return LevelComparison(
        mean_abs_diff=mean_abs_diff(ra, rb) if elementwise else None,
        cosine=cosine_similarity(ra, rb) if elementwise else None,
        cka=linear_cka(ra, rb),
        shape_a=(int(a.shape[0]), int(a.shape[1]), int(a.shape[2])),
        shape_b=(int(b.shape[0]), int(b.shape[1]), int(b.shape[2])),
        resized_to=resized,
        elementwise=elementwise,
    )
