"""Picking what a mapping names out of the recorded calls: the call (``record_idx``) and the element
(``data_idx``), as MMRazor's mappings do. ``data_idx`` may also be a path into nested outputs: ``1.0`` (element 0
of element 1), ``memory`` (a dict key), ``0.hidden`` (a key or attribute), or a list ``[1, 0]``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from featvis_run.errors import RecordingError
from featvis_run.schema import MappingSpec

__all__ = ["describe", "locate_record", "parse_data_path", "select_record", "walk_path"]


def describe(value: Any, depth: int = 1) -> str:
    """A short description of a recorded value: ``Tensor(1x256x40x40)``, ``tuple of 4 [...]``, ``dict {a, b}``."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"{type(value).__name__}({'x'.join(str(int(v)) for v in shape)})"
    if isinstance(value, Mapping):
        return f"dict {{{', '.join(map(str, value))}}}"
    if isinstance(value, (tuple, list)):
        if depth <= 0:
            return f"{type(value).__name__} of {len(value)}"
        inner = ", ".join(describe(v, depth - 1) for v in value[:6]) + (", ..." if len(value) > 6 else "")
        return f"{type(value).__name__} of {len(value)} [{inner}]"
    return type(value).__name__


def parse_data_path(data_idx: Any, where: str) -> list[int | str]:
    """``data_idx`` as a list of steps (ints index tuples and lists, strings are keys or attributes).

    Accepts an int, a string path (``'1.0'``, ``'memory'``, ``'0.hidden'``) or a list of steps. A float is refused:
    Hydra reads an unquoted ``1.0`` as the number 1.0, which has lost the path.
    """
    if data_idx is None:
        return []
    if isinstance(data_idx, (bool, float)):
        raise RecordingError(
            f"{where}: data_idx={data_idx!r} was read as a number, which loses the path; quote it to keep it a "
            f"path: data_idx: '{data_idx}' (on the command line: \"data_idx:'{data_idx}'\")"
        )
    if isinstance(data_idx, int):
        return [data_idx]
    steps = data_idx.split(".") if isinstance(data_idx, str) else list(data_idx)
    out: list[int | str] = []
    for step in steps:
        text = str(step).strip()
        if not text:
            raise RecordingError(f"{where}: data_idx={data_idx!r} has an empty step; use e.g. '1.0' or 'memory'")
        try:
            out.append(int(text))
        except ValueError:
            out.append(text)
    return out


def walk_path(value: Any, path: Sequence[int | str], where: str, data_idx: Any) -> tuple[Any, Any]:
    """Follow ``path`` into ``value``; returns (the value reached, its parent container or None).

    A value with a ``levels()`` method (an encoder memory) is indexed by level. A RecordingError shows the value at
    the step that failed."""
    walked: list[str] = []
    parent = None
    for step in path:
        here = "the recorded value" if not walked else f"data_idx {'.'.join(walked)}"
        if hasattr(value, "levels") and callable(value.levels):
            value = value.levels()
        if isinstance(value, (tuple, list)) and isinstance(step, int):
            if not -len(value) <= step < len(value):
                raise RecordingError(
                    f"{where}: data_idx={data_idx!r} is out of range at step {step}: {here} is {describe(value)}; "
                    f"use an index below {len(value)}"
                )
            parent, value = value, value[step]
        elif isinstance(value, Mapping) and (step in value or str(step) in value):
            parent, value = value, value[step] if step in value else value[str(step)]
        elif isinstance(step, str) and not isinstance(value, (tuple, list, Mapping)) and hasattr(value, step):
            parent, value = None, getattr(value, step)
        elif hasattr(value, "shape") and hasattr(value, "dtype"):
            raise RecordingError(
                f"{where}: data_idx={data_idx!r} goes one step too deep: {here} is already {describe(value)}; "
                f"drop the step {step!r}"
            )
        else:
            raise RecordingError(
                f"{where}: data_idx={data_idx!r} cannot take step {step!r}: {here} is {describe(value)}"
            )
        walked.append(str(step))
    return value, parent


def select_record(records: Mapping[str, list[Any]], level: str, mapping: MappingSpec) -> Any:
    """The value a mapping names: call ``record_idx`` of ``recorder``, then the ``data_idx`` path (if set)."""
    return locate_record(records, level, mapping)[0]


def locate_record(records: Mapping[str, list[Any]], level: str, mapping: MappingSpec) -> tuple[Any, Any, Any]:
    """(the value a mapping names, its parent container or None, the last path step or None)."""
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
    where = f"mapping {level!r} (recorder {mapping.recorder!r})"
    path = parse_data_path(mapping.data_idx, where)
    value, parent = walk_path(calls[mapping.record_idx], path, where, mapping.data_idx)
    return value, parent, (path[-1] if path else None)
