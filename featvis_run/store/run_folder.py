"""A run's folder as a resumable unit: the settings it was made with, and a journal of the images finished.

``.featvis/run.json`` records a fingerprint of the settings (the resolved config without the keys that do not change
what is drawn: ``debug``, ``cache``, ``images.batch_size``, ``output.dir``, ``output.overwrite``) when the first image
is finished (a run that failed before that leaves the folder free); every finished image appends one line to
``.featvis/done.jsonl`` with what the manifest needs. A run into a folder made with the
same settings skips the images whose files are all there and ends with one manifest covering everything; a folder
made with other settings is refused (naming the keys that differ) unless ``output.overwrite=true``, which first
removes the earlier run's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featvis_run.errors import ConfigError, OutputError
from featvis_run.hashing import stable_hash
from featvis_run.store.outputs import jsonable, write_json

__all__ = ["IGNORED_KEYS", "RunFolder", "check_settings", "differing_keys", "flatten", "holds_run", "settings_of"]

#: keys that do not change what a run draws: runs that differ only in these share a folder
IGNORED_KEYS = ("debug", "cache", "images.batch_size", "output.dir", "output.overwrite", "hydra")
_STATE = ".featvis"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b.c": value}``."""
    if isinstance(node, Mapping):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out or ({prefix[:-1]: {}} if prefix else {})
    return {prefix[:-1]: node}


def settings_of(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The flattened settings that determine a run's outputs."""
    flat = flatten(jsonable(dict(resolved)))
    return {k: v for k, v in flat.items() if not any(k == i or k.startswith(f"{i}.") for i in IGNORED_KEYS)}


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ between two flattened settings."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _stored_settings(out_dir: Path) -> dict[str, Any] | None:
    """The settings of the run already in ``out_dir``: from its state file, else an earlier version's manifest."""
    for path, pick in ((out_dir / _STATE / "run.json", "settings"), (out_dir / "manifest.json", "config")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(path.read_text())
            return data[pick] if pick == "settings" else settings_of(data[pick])
    return None


def holds_run(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a featvis-run run (its state file, or an earlier version's manifest)."""
    return (out_dir / _STATE / "run.json").is_file() or (out_dir / "manifest.json").is_file()


def check_settings(out_dir: Path, resolved: Mapping[str, Any], overwrite: bool) -> bool:
    """Whether ``out_dir`` holds a run with the same settings as ``resolved`` (False: none, or one to overwrite).

    Raises:
        ConfigError: it holds a run with other settings and ``overwrite`` is False.
    """
    stored = _stored_settings(out_dir)
    if stored is None:
        return False
    settings = settings_of(resolved)
    if stored == settings:
        return True
    if overwrite:
        return False
    changed = differing_keys(stored, settings)
    raise ConfigError(
        f"output.dir={str(out_dir)!r} holds a run with other settings (they differ in "
        f"{', '.join(changed[:6])}{', ...' if len(changed) > 6 else ''}); choose another output.dir, "
        "or add output.overwrite=true to replace it"
    )


@dataclass
class RunFolder:
    """The state of a run in ``out_dir``: what was already finished (``done``, by image id, in order)."""

    out_dir: Path
    settings: dict[str, Any]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    resumed: bool = False

    @classmethod
    def open(cls, out_dir: Path, resolved: Mapping[str, Any], overwrite: bool = False) -> RunFolder:
        """Start or resume the run with ``resolved`` settings in ``out_dir``.

        Raises:
            ConfigError: the folder holds a run with other settings and ``overwrite`` is False.
        """
        settings = settings_of(resolved)
        same = check_settings(out_dir, resolved, overwrite)
        if not same and holds_run(out_dir):
            remove_run(out_dir)
        folder = cls(out_dir, settings)
        if same:
            folder.done = _read_journal(out_dir / _STATE / "done.jsonl")
            folder.resumed = True
        return folder

    def finished(self, image_id: str) -> dict[str, Any] | None:
        """The journal entry of ``image_id`` if every file it lists is still there, else None."""
        entry = self.done.get(image_id)
        if entry is None or not all((self.out_dir / f).is_file() for f in entry.get("files", ())):
            return None
        return entry

    def record(self, image_id: str, files: Iterable[str], payload: Mapping[str, Any]) -> None:
        """Append a finished image to the journal (one line, flushed and synced)."""
        entry = {"image_id": image_id, "files": list(files), **jsonable(dict(payload))}
        line = json.dumps(entry, ensure_ascii=False, allow_nan=False) + "\n"
        if not (self.out_dir / _STATE / "run.json").is_file():  # the folder holds this run from its first image on
            state = {"fingerprint": stable_hash(self.settings), "settings": self.settings}
            write_json(self.out_dir / _STATE / "run.json", state)
        path = self.out_dir / _STATE / "done.jsonl"
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise OutputError(f"cannot write {str(path)!r}: {err.strerror or err}; free some space") from err
        self.done[image_id] = entry


def _read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """The journal's entries by image id (a torn last line from a killed run is skipped)."""
    entries: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                entries[entry["image_id"]] = entry
    return entries


def remove_run(out_dir: Path) -> None:
    """Remove the files an earlier run wrote into ``out_dir`` (its journal's and manifest's files, contact sheets,
    manifest and state), leaving anything else; empty folders it leaves are removed."""
    files: set[str] = {"manifest.json", "layers.json", "index.html"}
    for entry in _read_journal(out_dir / _STATE / "done.jsonl").values():
        files.update(entry.get("files", ()))
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((out_dir / "manifest.json").read_text())
        for key in ("outputs", "contact_sheets", "comparisons"):
            for item in manifest.get(key, ()):
                files.update(str(item[f]) for f in ("file", "diff_file", "panel_file") if item.get(f))
    for name in files:
        path = out_dir / name
        with contextlib.suppress(OSError):
            if path.is_file():
                path.unlink()
            with contextlib.suppress(OSError):
                for parent in path.parents:
                    if parent == out_dir:
                        break
                    parent.rmdir()  # only empty folders go
    shutil.rmtree(out_dir / _STATE, ignore_errors=True)
    contact = out_dir / "contact"
    if contact.is_dir():
        shutil.rmtree(contact, ignore_errors=True)
