"""MMRazor ``vis_config`` files as featvis-run recorders: the ``recorders`` and ``mappings`` dicts of MMRazor's
``feature_visualization.py`` (or ``recorders1/mappings1`` and ``recorders2/mappings2`` of its
``feature_diff_visualization.py``), used unchanged.

Recorder types map one to one (``ModuleOutputs`` -> ``module_outputs``, ... ``Parameter`` -> ``parameter``; a
``Recorder`` suffix is accepted), ``_scope_`` is ignored, and an ``architecture.`` prefix on a source (MMRazor's
algorithm wrapper, absent from a plain model) is removed with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featvis_run.errors import ConfigError, error_line
from featvis_run.schema import MappingSpec, RecorderSpec, parse_recorders

__all__ = ["MMRAZOR_TYPES", "VisConfig", "load_vis_config"]

MMRAZOR_TYPES = {
    "ModuleOutputs": "module_outputs",
    "ModuleInputs": "module_inputs",
    "MethodOutputs": "method_outputs",
    "MethodInputs": "method_inputs",
    "FunctionOutputs": "function_outputs",
    "FunctionInputs": "function_inputs",
    "Parameter": "parameter",
}
_PREFIX = "architecture."


@dataclass(frozen=True)
class VisConfig:
    """The typed recorders and mappings of one side of a vis_config file, with notes on what was adapted."""

    recorders: dict[str, RecorderSpec]
    mappings: dict[str, MappingSpec]
    notes: tuple[str, ...] = ()


def _recorder(name: str, entry: Any, where: str, notes: list[str]) -> dict[str, Any]:
    if not isinstance(entry, dict) or "type" not in entry or "source" not in entry:
        raise ConfigError(f"{where}.{name} must be a dict with type and source, like dict(type='ModuleOutputs', ...)")
    kind = str(entry["type"]).rsplit(".", 1)[-1].removesuffix("Recorder")
    if kind not in MMRAZOR_TYPES:
        raise ConfigError(
            f"{where}.{name}.type={entry['type']!r} is not an MMRazor recorder ({', '.join(MMRAZOR_TYPES)})"
        )
    source = str(entry["source"])
    if source.startswith(_PREFIX):
        notes.append(
            f"{where}.{name}: source {source!r} names MMRazor's algorithm wrapper; recorded as "
            f"{source[len(_PREFIX) :]!r} on the plain model"
        )
        source = source[len(_PREFIX) :]
    return {"type": MMRAZOR_TYPES[kind], "source": source}


def _mapping(name: str, entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or "recorder" not in entry:
        raise ConfigError(f"{where}.{name} must be a dict with a recorder, like dict(recorder='neck', data_idx=0)")
    return {"recorder": entry["recorder"], "data_idx": entry.get("data_idx"), "record_idx": entry.get("record_idx", 0)}


def load_vis_config(path: str, side: int | None = None) -> VisConfig:
    """Read an MMRazor vis_config file.

    Args:
        path: the file.
        side: 1 or 2: a diff config's ``recorders1/mappings1`` or ``recorders2/mappings2`` (a plain config's
            ``recorders/mappings`` serve both sides); None: ``recorders/mappings`` (a diff config gives its first).

    Returns:
        The recorders and mappings in featvis-run's form; a ConfigError names anything that cannot be used.
    """
    from mmengine.config import Config

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"recorder.file={path!r}: no such file; give the path of an MMRazor vis_config .py file")
    try:
        cfg = Config.fromfile(str(file)).to_dict()
    except Exception as err:  # the file is Python that mmengine runs: any exception can come out of it
        where = "" if str(file.resolve()) == path else f" ({file.resolve()})"
        reason = error_line(err)
        raise ConfigError(f"recorder.file={path!r}{where} cannot be read as an mmengine config: {reason}") from err
    own = side is not None and f"recorders{side}" in cfg  # a diff config's side
    suffix = str(side) if own else ("" if "recorders" in cfg else "1")
    rec_key, map_key = f"recorders{suffix}", f"mappings{suffix}"
    if rec_key not in cfg:
        found = ", ".join(k for k in cfg if k.startswith(("recorders", "mappings"))) or "none"
        raise ConfigError(f"recorder.file={path!r} has no {rec_key} (it defines: {found})")
    notes: list[str] = []
    where = f"{file.name}:{rec_key}"
    recorders = {n: _recorder(n, e, where, notes) for n, e in dict(cfg[rec_key]).items()}
    mappings = {n: _mapping(n, e, f"{file.name}:{map_key}") for n, e in dict(cfg.get(map_key) or {}).items()}
    specs, levels = parse_recorders("mmrazor", recorders, mappings, where=file.name)
    return VisConfig(specs, levels, tuple(notes))
