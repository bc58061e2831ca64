"""From recorded values to named feature maps: the (N, C, H, W) array of every level, named by its mapping or, for a
recorder without mappings, by position or by stride (``level_prefix``).

Recorded values may be (N, C, H, W) maps, (N, L, C) token sequences (laid on their grid: the mapping's ``grid``,
the (H, W) the output carries next to them as Swin stages do, or the one their stride implies), multi-level encoder
memories (:class:`SpatialTokens`), or tuples, lists and dicts of these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featvis_run.errors import RecordingError
from featvis_run.maps.strides import stride_names
from featvis_run.maps.tokens import GridError, infer_token_grid, split_token_levels, tokens_to_maps
from featvis_run.recording.select import describe, locate_record, select_record
from featvis_run.schema import MappingSpec, RecorderSpec

__all__ = [
    "LevelKey",
    "ParameterValue",
    "SpatialTokens",
    "StageOutputs",
    "missing_part",
    "as_maps",
    "check_map_value",
    "extract_levels",
    "hw_pair",
    "stage_maps",
]


@dataclass(frozen=True, order=True)
class LevelKey:
    """A drawn map's name: the recorder (``layer``, e.g. ``neck``) and the level (e.g. ``p3``)."""

    layer: str
    level: str


@dataclass(frozen=True)
class SpatialTokens:
    """Tokens of one or more levels concatenated along L, with each level's (h, w), as a transformer encoder holds
    them: ``tokens`` is (N, sum(h*w), C)."""

    tokens: Any
    shapes: tuple[tuple[int, int], ...]

    def levels(self) -> tuple[np.ndarray, ...]:
        """One (N, C, h, w) array per level."""
        return tuple(split_token_levels(_array(self.tokens), self.shapes))


@dataclass(frozen=True)
class StageOutputs:
    """What the parts of a backbone output in one forward pass (a ``stage_outputs`` recorder): ``outputs`` by module
    name, in the order the calls finished; ``extra_tokens`` leading non-grid tokens of its token outputs (a ViT's
    class token, a DeiT's distillation token: the backbone's ``num_extra_tokens``)."""

    outputs: dict[str, Any]
    extra_tokens: int = 0


@dataclass(frozen=True)
class ParameterValue:
    """A parameter of the model (recorded once per forward pass): not per image, so its maps repeat for each."""

    tensor: Any


def missing_part(recorder: str, part: str, model_type: str, top: list[str], detr: bool = False) -> str:
    """The one line for a preset recording a ``neck`` (or ``backbone``) the model does not have."""
    others = "recorder=backbone" if part == "neck" else "recorder=fpn"
    if detr:
        others += ", recorder=encoder"
    return (
        f"recorder {recorder!r} records the model's {part!r}, but {model_type} has none (its top-level modules: "
        f"{', '.join(top)}); use {others}, or record a module of your own: recorder=custom "
        "'+recorder.recorders.x={type:module_outputs,source:<module>}' (every name: featvis-run mode=layers)"
    )


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (str, bytes))


def _array(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def hw_pair(x: Any) -> tuple[int, int] | None:
    """``x`` as an (H, W) pair of positive ints (a tuple, list or torch.Size), or None."""
    if isinstance(x, (tuple, list)) and len(x) == 2:
        try:
            h, w = (int(v) for v in x)
        except (TypeError, ValueError):
            return None
        if h > 0 and w > 0 and all(not _is_array(v) or getattr(v, "ndim", 1) == 0 for v in x):
            return h, w
    return None


def check_map_value(value: Any, where: str, batch: int) -> None:
    """Refuse a value that cannot be drawn as a map (its structure only; a token grid is checked later)."""
    if isinstance(value, ParameterValue):
        shape = tuple(int(v) for v in value.tensor.shape)
        if len(shape) != 4:
            raise RecordingError(
                f"{where} is a parameter of shape {shape}; only 4-D (convolution) weights are drawn, as MMRazor does "
                "(the first filter's (in, kh, kw)); record a module's outputs instead"
            )
        return
    if isinstance(value, SpatialTokens):
        if len(value.shapes) != 1:
            raise RecordingError(
                f"{where} is an encoder memory of {len(value.shapes)} levels {list(value.shapes)}; "
                f"set data_idx (0..{len(value.shapes) - 1}) to pick one, or drop the mapping to draw them all"
            )
        return
    if isinstance(value, (tuple, list, Mapping)):
        raise RecordingError(
            f"{where} is {describe(value)}, not one feature map; set data_idx to pick an element "
            "(a path such as '1.0' or 'memory' reaches nested ones)"
        )
    if not _is_array(value):
        raise RecordingError(f"{where} recorded a {type(value).__name__}, not a tensor; record another layer")
    shape = tuple(int(v) for v in value.shape)
    if len(shape) == 4 and shape[0] != batch:
        raise RecordingError(
            f"{where} has shape {shape}: its first axis is not the batch of {batch} image(s). This looks like RoI "
            "features (one map per proposal), which featvis-run does not draw; record the maps they are pooled "
            "from instead (recorder=fpn, or the neck/backbone module)"
        )
    if len(shape) == 3 and shape[0] != batch:
        raise RecordingError(
            f"{where} has shape {shape}, which is neither (N={batch}, L, C) tokens nor an (N, C, H, W) map; "
            "record another layer or pick another data_idx"
        )
    if len(shape) not in (3, 4) or 0 in shape:
        raise RecordingError(
            f"{where} has shape {shape}, not an (N={batch}, C, H, W) feature map or (N, L, C) tokens; "
            "record another layer or pick another data_idx"
        )


def as_maps(
    value: Any,
    where: str,
    batch: int,
    input_hw: Sequence[int],
    grid: Sequence[int] | None = None,
    extra_tokens: int = 0,
    carried_hw: Sequence[int] | None = None,
) -> np.ndarray:
    """A recorded value as an (N, C, H, W) float32 array.

    Args:
        value: a 4-D map, 3-D tokens, or single-level :class:`SpatialTokens`.
        where: the level's name in error messages.
        batch: images in the batch (N).
        input_hw: the padded network input's (H, W), for inferring a token grid.
        grid: an explicit (H, W) for tokens (the mapping's ``grid``).
        extra_tokens: leading non-grid tokens to drop.
        carried_hw: the (H, W) the model output carried next to the tokens.
    """
    check_map_value(value, where, batch)
    if isinstance(value, SpatialTokens):
        return value.levels()[0]
    if isinstance(value, ParameterValue):  # the first filter, as MMRazor draws it, for every image
        first = _array(value.tensor)[0]
        return np.repeat(first[None], batch, axis=0)
    arr = _array(value)
    if arr.ndim == 4:
        return arr
    length = arr.shape[1]
    try:
        if grid is not None or carried_hw is not None:
            hw = tuple(grid if grid is not None else carried_hw)
        else:
            hw, extra_tokens = _token_grid(length, input_hw, extra_tokens)
        return tokens_to_maps(arr, hw, extra_tokens)
    except GridError as err:
        raise RecordingError(
            f"{where} holds tokens of shape {tuple(arr.shape)} and no grid fits ({err}); set the mapping's "
            f"grid: [H, W] and/or extra_tokens: N (leading class/distillation tokens), e.g. "
            f"'+recorder.mappings.x={{recorder:...,grid:[H,W],extra_tokens:1}}'"
        ) from None


_MAX_EXTRA_TOKENS = 8  # class + distillation + register tokens a ViT may lead its sequence with


def _token_grid(length: int, input_hw: Sequence[int], extra_tokens: int) -> tuple[tuple[int, int], int]:
    """The grid of ``length`` tokens and the leading extra tokens it leaves out: ``extra_tokens`` when given, else
    the fewest (0, 1, ... 8: a ViT's class, distillation and register tokens) that leave a grid fitting the input."""
    if extra_tokens:
        return infer_token_grid(length, input_hw, extra_tokens), extra_tokens
    for extra in range(min(_MAX_EXTRA_TOKENS, length - 1) + 1):
        try:
            return infer_token_grid(length, input_hw, extra), extra
        except GridError:
            continue
    return infer_token_grid(length, input_hw, 0), 0  # raises the GridError for no extra tokens


def _expand(value: Any) -> Any:
    """Encoder memories become a tuple of per-level maps, so that data_idx can index them."""
    return value.levels() if isinstance(value, SpatialTokens) and len(value.shapes) > 1 else value


def _drawable(value: Any) -> bool:
    return isinstance(value, (SpatialTokens, ParameterValue)) or (
        _is_array(value) and getattr(value, "ndim", 0) in (3, 4)
    )


def _nested(label: str, value: Any, depth: int) -> list[tuple[str, Any, tuple[int, int] | None]]:
    """The drawable values inside nested tuples and lists, labelled by their path (``1.0``, ``0.2.0``): a method's
    inputs hold a list of backbone outputs, and ViT-style backbones (DPT's) output (map, class token) pairs."""
    if depth <= 0 or not isinstance(value, (tuple, list)):
        return []
    found = []
    for j, item in enumerate(value):
        item = _expand(item)
        if _drawable(item):
            found.append((f"{label}.{j}", item, None))
        else:
            found += _nested(f"{label}.{j}", item, depth - 1)
    return found


def _items(value: Any) -> list[tuple[str, Any, tuple[int, int] | None]]:
    """(position label, drawable value, carried (H, W)) of every map in a recorder's first call, up to three levels
    deep."""
    value = _expand(value)
    if _drawable(value):
        return [("out", value, None)]
    if isinstance(value, Mapping):
        entries: list[tuple[str, Any]] = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (tuple, list)):
        entries = [(str(i), v) for i, v in enumerate(value)]
    else:
        return []
    found = []
    for pos, (label, item) in enumerate(entries):
        item = _expand(item)
        carried = hw_pair(entries[pos + 1][1]) if pos + 1 < len(entries) else None
        if _drawable(item):
            found.append((label, item, carried))
        else:
            found += _nested(label, item, 2)
    return found


def stage_maps(value: StageOutputs, batch: int, input_hw: Sequence[int]) -> list[tuple[str, np.ndarray]]:
    """A backbone's stages: of the maps its parts output, the last one of each size (a stage's output, after any
    norm applied to it), in call order, as (module name, (N, C, H, W)) pairs. Token outputs are laid on their grid
    (the (H, W) they carry, else the one their stride implies after ``extra_tokens``); outputs that are no map
    (pooled vectors, 1 x 1 maps, sequences without a grid) are left out."""
    last: dict[tuple[int, ...], tuple[int, str, np.ndarray]] = {}
    for order, (name, out) in enumerate(value.outputs.items()):
        tensor, carried = out, None
        if isinstance(out, (tuple, list)) and out and _is_array(out[0]):
            tensor, carried = out[0], hw_pair(out[1]) if len(out) > 1 else None
        if not (_is_array(tensor) and getattr(tensor, "ndim", 0) in (3, 4) and tensor.shape[0] == batch):
            continue
        extra = 0 if carried is not None or tensor.ndim == 4 else value.extra_tokens
        try:
            m = as_maps(tensor, name, batch, input_hw, extra_tokens=extra, carried_hw=carried)
        except RecordingError:
            continue
        if m.shape[-2] * m.shape[-1] > 1:
            last[tuple(m.shape[-2:])] = (order, name, m)
    return [(name, m) for _, name, m in sorted(last.values(), key=lambda entry: entry[0])]


def _unmapped_levels(
    name: str, spec: RecorderSpec, value: Any, batch: int, input_hw: Sequence[int]
) -> dict[LevelKey, np.ndarray]:
    if isinstance(value, StageOutputs):
        labelled = stage_maps(value, batch, input_hw)
    else:
        items = _items(value)
        maps = [as_maps(v, f"{name}/{label}", batch, input_hw, carried_hw=hw) for label, v, hw in items]
        labelled = [(label, m) for (label, _, _), m in zip(items, maps, strict=True)]
    if not labelled:
        raise RecordingError(
            f"recorder {name!r} ({spec.source}) recorded {describe(value)}, which holds no feature map; "
            "record another module, or add a mapping with a data_idx path"
        )
    if spec.level_prefix:
        named = stride_names(spec.level_prefix, input_hw, [m.shape[-2:] for _, m in labelled])
        return {LevelKey(name, level): labelled[i][1] for i, level in named}
    return {LevelKey(name, label): m for label, m in labelled}


def select_level(records: Mapping[str, list[Any]], level: str, mapping: MappingSpec) -> tuple[Any, Any]:
    """The value a mapping names and the (H, W) the output carries right after it (Swin's ``hw_shape``), if any."""
    value, parent, last = locate_record(records, level, mapping)
    carried = None
    if isinstance(parent, (tuple, list)) and isinstance(last, int) and 0 <= last < len(parent) - 1:
        carried = hw_pair(parent[last + 1])
    return value, carried


def extract_levels(
    records: Mapping[str, list[Any]],
    recorders: Mapping[str, RecorderSpec],
    mappings: Mapping[str, MappingSpec],
    batch: int,
    input_hw: Sequence[int],
) -> dict[LevelKey, np.ndarray]:
    """The (N, C, H, W) map of every mapping (in config order), then of every recorder without mappings.

    A recorder without mappings contributes every map of its first call: named by stride with its
    ``level_prefix`` (``p3``, ``p4``, ... fine to coarse), else by position (``0``, ``1``, ``1.0``; ``out`` for a
    single tensor).
    """
    out: dict[LevelKey, np.ndarray] = {}
    for level, mapping in mappings.items():
        where = f"{mapping.recorder}/{level}"
        value, carried = select_level(records, level, mapping)
        grid = tuple(mapping.grid) if mapping.grid else None
        out[LevelKey(mapping.recorder, level)] = as_maps(
            value, where, batch, input_hw, grid, mapping.extra_tokens, carried
        )
    mapped = {m.recorder for m in mappings.values()}
    for name, spec in recorders.items():
        if name in mapped:
            continue
        value = select_record(records, name, MappingSpec(recorder=name))
        out.update(_unmapped_levels(name, spec, value, batch, input_hw))
    if not out:
        raise RecordingError("the recorder config records nothing: add recorders (and mappings) under recorder=...")
    return out
