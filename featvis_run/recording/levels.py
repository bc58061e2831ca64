"""From recorded values to named feature maps: which (layer, level) each mapping names, as (N, C, H, W) arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from featvis_run.errors import RecordingError
from featvis_run.recording.select import select_record
from featvis_run.schema import MappingSpec, RecorderSpec

__all__ = ["LevelKey", "extract_levels"]


@dataclass(frozen=True, order=True)
class LevelKey:
    """A drawn map's name: the recorder (``layer``, e.g. ``neck``) and the mapping (``level``, e.g. ``p3``)."""

    layer: str
    level: str


def _as_batch(value: Any, key: LevelKey, batch: int) -> np.ndarray:
    import torch

    if isinstance(value, (tuple, list)):
        raise RecordingError(
            f"{key.layer}/{key.level} is a {type(value).__name__} of {len(value)} values, not one feature map; "
            f"set data_idx (0..{len(value) - 1}) in its mapping"
        )
    if not isinstance(value, torch.Tensor):
        raise RecordingError(f"{key.layer}/{key.level} recorded a {type(value).__name__}, not a tensor")
    if value.dim() == 3 and batch == 1:
        value = value.unsqueeze(0)
    if value.dim() != 4 or value.shape[0] != batch:
        raise RecordingError(
            f"{key.layer}/{key.level} has shape {tuple(value.shape)}, not a (N={batch}, C, H, W) feature map; "
            "record another layer or pick another data_idx"
        )
    return value.detach().float().cpu().numpy()


def extract_levels(
    records: Mapping[str, list[Any]],
    recorders: Mapping[str, RecorderSpec],
    mappings: Mapping[str, MappingSpec],
    batch: int,
) -> dict[LevelKey, np.ndarray]:
    """The (N, C, H, W) map of every mapping, in config order.

    A recorder with no mapping contributes all of its first call: a tensor as level ``out``, a tuple as levels
    ``0``, ``1``, ... (its 4-D tensors only).
    """
    out: dict[LevelKey, np.ndarray] = {}
    for level, mapping in mappings.items():
        key = LevelKey(mapping.recorder, level)
        out[key] = _as_batch(select_record(records, level, mapping), key, batch)
    mapped = {m.recorder for m in mappings.values()}
    for name in recorders:
        if name in mapped:
            continue
        value = select_record(records, name, MappingSpec(recorder=name))
        if isinstance(value, (tuple, list)):
            for i, item in enumerate(value):
                if getattr(item, "dim", lambda: 0)() in (3, 4):
                    out[LevelKey(name, str(i))] = _as_batch(item, LevelKey(name, str(i)), batch)
        else:
            out[LevelKey(name, "out")] = _as_batch(value, LevelKey(name, "out"), batch)
    if not out:
        raise RecordingError("the recorder config records nothing: add recorders (and mappings) under recorder=...")
    return out
