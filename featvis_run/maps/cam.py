"""Class activation maps over (C, H, W) arrays: Grad-CAM, EigenCAM, and the fused map of several levels. Pure
functions, no I/O, no model code.

- Grad-CAM (Selvaraju et al.): ``CAM = ReLU(sum_c w_c * A_c)`` with ``w_c`` the spatial mean of ``d score / d A_c``.
- EigenCAM (as pytorch-grad-cam's ``get_2d_projection``): the (H*W, C) activations, centred per channel, projected on
  their first principal component. Computed from the C x C Gram matrix (``eigh``), never an (H*W)^2 matrix. The sign
  is fixed so that the map correlates positively with the channel-mean map (equivalently, the component's loadings
  sum to a non-negative number); not clipped at 0.
- Fused map: each level's CAM upsampled onto the resized image, divided by its own maximum, averaged over levels.

Non-finite values (a diverged model) count as 0 in sums and leave their cells NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from featvis_run.maps.geometry import Geometry, cell_span, upsample_to_canvas

__all__ = ["FUSED", "eigen_cam", "fuse_cams", "grad_cam", "gradcam_weights", "valid_region"]

FUSED = "fused"  # the level name of a layer's fused map


def valid_region(feat_hw: tuple[int, int], geom: Geometry) -> tuple[slice, slice]:
    """The rows and columns of a (H, W) map that cover the resized image (as :func:`crop_valid` crops)."""
    spans = [cell_span(*args) for args in zip(feat_hw, geom.img_hw, geom.input_hw, geom.offset_hw, strict=True)]
    return slice(spans[0][0], spans[0][1]), slice(spans[1][0], spans[1][1])


def gradcam_weights(grads: np.ndarray, region: tuple[slice, slice] | None = None) -> np.ndarray:
    """``w_c``: the mean of each channel's gradient over ``region`` (default: the whole map); (C,) float64."""
    g = grads if region is None else grads[:, region[0], region[1]]
    g = np.where(np.isfinite(g), g, 0.0).astype(np.float64)
    return g.reshape(g.shape[0], -1).mean(axis=1)


def grad_cam(acts: np.ndarray, grads: np.ndarray, region: tuple[slice, slice] | None = None) -> np.ndarray:
    """Grad-CAM of one (C, H, W) map with its gradient: ``ReLU(sum_c w_c * A_c)`` as a (1, H, W) float32 map.

    Args:
        acts: the activations A.
        grads: d score / d A, same shape.
        region: where the weights are averaged (the cells covering the image, so padding does not dilute them);
            the map itself covers every cell.
    """
    if acts.shape != grads.shape or acts.ndim != 3:
        raise ValueError(f"activations {acts.shape} and gradients {grads.shape} must be the same (C, H, W)")
    w = gradcam_weights(grads, region)
    finite = np.isfinite(acts)
    a = np.where(finite, acts, 0.0).astype(np.float64)
    cam = np.maximum(np.tensordot(w, a, axes=1), 0.0)
    cam[~finite.all(axis=0)] = np.nan
    return cam[None].astype(np.float32)


def eigen_cam(acts: np.ndarray) -> np.ndarray:
    """EigenCAM of one (C, H, W) map: its projection on the first principal component, (1, H, W) float32.

    The (H*W, C) matrix is centred per channel; its first right singular vector is the top eigenvector of the
    C x C Gram matrix, so no (H*W) x (H*W) matrix is formed. Sign: loadings summing to >= 0 (ties: the largest
    loading positive).
    """
    if acts.ndim != 3:
        raise ValueError(f"expected a (C, H, W) map, got shape {acts.shape}")
    c, h, w = acts.shape
    finite = np.isfinite(acts)
    x = np.where(finite, acts, 0.0).astype(np.float64).reshape(c, -1).T  # (HW, C)
    x -= x.mean(axis=0, keepdims=True)
    if not np.any(x):
        out = np.zeros((1, h, w), np.float32)
    else:
        _, vecs = np.linalg.eigh(x.T @ x)
        v = vecs[:, -1]
        total = v.sum()
        if total < 0 or (total == 0 and v[np.argmax(np.abs(v))] < 0):
            v = -v
        out = (x @ v).reshape(1, h, w).astype(np.float32)
    out[:, ~finite.all(axis=0)] = np.nan
    return out


def fuse_cams(cams: Sequence[np.ndarray], geom: Geometry) -> np.ndarray:
    """The fused map of several levels' (H_l, W_l) CAMs (uncropped), as a (1, H_in, W_in) map over the padded
    network input (stride 1; zero on padding), so it is drawn like any level.

    Each CAM is cropped to the cells covering the image, upsampled bilinearly onto the resized image, divided by
    its maximum (a level whose CAM is all zero, i.e. does not reach the score, contributes zero), and the levels
    are averaged.
    """
    ih, iw = geom.img_hw
    resized = Geometry(geom.img_hw, geom.img_hw, geom.input_hw, geom.offset_hw)
    total = np.zeros((ih, iw), np.float64)
    for cam in cams:
        rows, cols = valid_region(cam.shape, geom)
        up = upsample_to_canvas(np.nan_to_num(cam[rows, cols], nan=0.0), cam.shape, resized, (ih, iw))
        up = np.nan_to_num(up, nan=0.0)  # a centre crop: the resized image's parts outside the input
        peak = float(up.max()) if up.size else 0.0
        if peak > 0:
            total += up / peak
    out = np.zeros((1, *geom.input_hw), np.float32)
    # paste the resized image's part inside the input (all of it unless the pipeline centre-cropped)
    (src_y, dst_y), (src_x, dst_x) = (
        _overlap(o, i, n) for o, i, n in zip(geom.offset_hw, geom.img_hw, geom.input_hw, strict=True)
    )
    out[0, dst_y, dst_x] = total[src_y, src_x] / max(1, len(cams))
    return out


def _overlap(offset: int, img: int, inp: int) -> tuple[slice, slice]:
    """Along one axis: the slices of the resized image and of the input where they overlap."""
    lo, hi = max(0, offset), min(inp, offset + img)
    hi = max(lo, hi)
    return slice(lo - offset, hi - offset), slice(lo, hi)
