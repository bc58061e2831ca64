"""Picking what a mapping names out of the recorded calls: the call (``record_idx``) and the element
(``data_idx``), as MMRazor's mappings do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from featvis_run.errors import RecordingError
from featvis_run.schema import MappingSpec

__all__ = ["select_record"]


def select_record(records: Mapping[str, list[Any]], level: str, mapping: MappingSpec) -> Any:
    """The value a mapping names: call ``record_idx`` of ``recorder``, element ``data_idx`` (if set)."""
    if mapping.recorder not in records:
        raise RecordingError(
            f"mapping {level!r} names recorder={mapping.recorder!r}, which is not defined; "
            f"defined recorders: {', '.join(records) or 'none'}"
        )
    calls = records[mapping.recorder]
    if not -len(calls) <= mapping.record_idx < len(calls):
        raise RecordingError(
            f"mapping {level!r}: record_idx={mapping.record_idx} but recorder {mapping.recorder!r} recorded "
            f"{len(calls)} call(s); use a record_idx below {len(calls)}"
        )
    data = calls[mapping.record_idx]
    if mapping.data_idx is None:
        return data
    if not isinstance(data, (tuple, list)):
        raise RecordingError(
            f"mapping {level!r}: data_idx={mapping.data_idx} but recorder {mapping.recorder!r} recorded a single "
            f"{type(data).__name__}, not a tuple; remove data_idx"
        )
    if not -len(data) <= mapping.data_idx < len(data):
        raise RecordingError(
            f"mapping {level!r}: data_idx={mapping.data_idx} is out of range: recorder {mapping.recorder!r} "
            f"recorded a tuple of {len(data)}; use a data_idx below {len(data)}"
        )
    return data[mapping.data_idx]
