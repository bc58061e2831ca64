"""Token sequences as spatial maps: a transformer's (B, L, C) tokens laid back on their (H, W) grid. Pure functions.

A grid is known when the model carries it (Swin stages return their ``hw_shape``; DETR encoders are called with
``spatial_shapes``) or when exactly one stride ``s`` gives ceil(H_in / s) x ceil(W_in / s) = L cells on the padded
input (after dropping leading class/distillation tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["GridError", "fitting_strides", "infer_token_grid", "split_token_levels", "tokens_to_maps"]


class GridError(ValueError):
    """No (or no unique) grid fits a token count."""


def fitting_strides(tokens: int, input_hw: Sequence[int]) -> list[int]:
    """Every integer stride ``s`` with ceil(H / s) * ceil(W / s) == ``tokens`` on an (H, W) input."""
    h, w = int(input_hw[0]), int(input_hw[1])
    return [s for s in range(1, max(h, w) + 1) if math.ceil(h / s) * math.ceil(w / s) == tokens]


def infer_token_grid(length: int, input_hw: Sequence[int], extra_tokens: int = 0) -> tuple[int, int]:
    """The (H, W) grid of ``length - extra_tokens`` tokens on an input of ``input_hw``.

    Args:
        length: the token count L of a (B, L, C) tensor.
        input_hw: the padded network input's (H, W).
        extra_tokens: leading tokens that are not grid cells (class, distillation).

    Returns:
        (H, W) of the unique fitting stride (a power of two wins when several integer strides fit).

    Raises:
        GridError: when no stride fits, or several do and none is a unique power of two.
    """
    cells = length - extra_tokens
    if cells <= 0:
        raise GridError(f"{length} tokens minus {extra_tokens} extra tokens leave no grid cells")
    fits = fitting_strides(cells, input_hw)
    if len(fits) > 1:
        powers = [s for s in fits if s & (s - 1) == 0]
        fits = powers if len(powers) == 1 else fits
    if len(fits) != 1:
        found = f"strides {fits} all fit" if fits else "no stride fits"
        raise GridError(f"{cells} tokens on a {input_hw[0]}x{input_hw[1]} input: {found}")
    s = fits[0]
    return math.ceil(input_hw[0] / s), math.ceil(input_hw[1] / s)


def tokens_to_maps(tokens: np.ndarray, hw: Sequence[int], extra_tokens: int = 0) -> np.ndarray:
    """(B, L, C) tokens as (B, C, H, W) maps, dropping ``extra_tokens`` leading tokens; a GridError if H*W differs."""
    b, length, c = tokens.shape
    h, w = int(hw[0]), int(hw[1])
    if length - extra_tokens != h * w:
        raise GridError(
            f"{length} tokens minus {extra_tokens} extra tokens is {length - extra_tokens}, not {h}x{w}={h * w} cells"
        )
    grid = tokens[:, extra_tokens:, :].reshape(b, h, w, c)
    return np.ascontiguousarray(grid.transpose(0, 3, 1, 2))


def split_token_levels(tokens: np.ndarray, shapes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Split (B, sum(h*w), C) tokens of several levels, concatenated in order, into (B, C, h, w) maps."""
    total = sum(int(h) * int(w) for h, w in shapes)
    if tokens.shape[1] != total:
        raise GridError(f"{tokens.shape[1]} tokens but the level shapes {[tuple(s) for s in shapes]} hold {total}")
    maps, start = [], 0
    for h, w in shapes:
        n = int(h) * int(w)
        maps.append(tokens_to_maps(tokens[:, start : start + n], (h, w)))
        start += n
    return maps
