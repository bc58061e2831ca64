"""Naming feature levels by their stride: a map whose cells are 2^k input pixels apart is level ``k`` (P3 at stride
8, C2 at stride 4), the convention of FPN papers and of mmdet's configs. Pure functions.

The stride of a map is the padded network input's size divided by the map's size, along the axis with more cells
(the more precise one). Stride-2 layers round sizes up, so a small input's coarse levels measure less than their
nominal stride (P7 of a 160-pixel-wide input has 2 columns: 80 pixels each, nominally 128): the stride is taken as
the power of two that gives the map's size under that rounding, as :func:`~featvis_run.maps.geometry.feature_stride`
does. ``k`` is the rounded log2 of the stride, so strides that are no power of two (SSD's 100 and 300) get the
nearest ``k``. Levels are ordered fine to coarse whatever order a model returns them in; levels sharing a ``k`` (a
dilated ResNet's stride-8 stages) are named ``c3``, ``c3_2``, ``c3_3`` in order. A map strictly smaller than the
level that took ``k`` is a coarser level, so it gets ``k + 1`` (SSDLite's 2 x 2 and 1 x 1 maps on a 320 input are
P8 and P9, although both measure about 2^8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from featvis_run.maps.geometry import feature_stride

__all__ = ["level_exponent", "stride_names"]


def level_exponent(input_hw: Sequence[int], map_hw: Sequence[int]) -> int:
    """``k`` = round(log2(stride)) of a map of size ``map_hw`` on an input of size ``input_hw`` (see the module
    docstring for the stride); a 1 x 1 map's stride is the whole input."""
    if min(map_hw) <= 0 or min(input_hw) <= 0:
        raise ValueError(f"sizes must be positive, got input {tuple(input_hw)} and map {tuple(map_hw)}")
    axis = 0 if map_hw[0] >= map_hw[1] else 1
    stride = feature_stride(input_hw[axis], map_hw[axis]) if map_hw[axis] > 1 else max(input_hw)
    return max(0, round(math.log2(stride)))


def stride_names(prefix: str, input_hw: Sequence[int], map_hws: Sequence[Sequence[int]]) -> list[tuple[int, str]]:
    """Name maps by stride, fine to coarse.

    Args:
        prefix: the level letter (``p`` for necks and encoders, ``c`` for backbones).
        input_hw: the padded network input's (H, W).
        map_hws: each map's (H, W), in the order the model returned them.

    Returns:
        (index into ``map_hws``, name) pairs, finest first; ties of equal size keep the model's order and get
        ``_2``, ``_3``; a strictly smaller map than the level named ``k`` gets ``k + 1``.
    """
    exponents = [level_exponent(input_hw, hw) for hw in map_hws]
    order = sorted(range(len(map_hws)), key=lambda i: (exponents[i], -map_hws[i][0] * map_hws[i][1], i))
    seen: dict[int, int] = {}
    named = []
    previous: int | None = None
    for i in order:
        k = exponents[i]
        if previous is not None and k <= exponents[previous] and _strictly_smaller(map_hws[i], map_hws[previous]):
            k = exponents[i] = exponents[previous] + 1  # coarser than the level named k: the next level up
        seen[k] = seen.get(k, 0) + 1
        named.append((i, f"{prefix}{k}" if seen[k] == 1 else f"{prefix}{k}_{seen[k]}"))
        previous = i
    return named


def _strictly_smaller(hw: Sequence[int], other: Sequence[int]) -> bool:
    return hw[0] <= other[0] and hw[1] <= other[1] and (hw[0] < other[0] or hw[1] < other[1])
