"""A run's folder as a resumable unit: a marker that says featvis-run made it, the settings it was made with, and a
journal of the images finished.

``.featvis/folder.json`` marks a run folder (``{"made_by": "featvis-run", "format": 2, "foreign": [...]}``);
``foreign`` lists what the folder held when featvis-run first used it, which it never replaces or removes unless
``output.overwrite=true``. Folders of earlier versions (format 1: ``.featvis/run.json``, or a ``manifest.json`` with
a ``config`` and the manifest's usual keys) count as run folders too; any other folder is used only if it is empty
or holds none of the names a run writes at its top (:data:`RUN_NAMES`, and the run's image folders).

``.featvis/run.json`` records a fingerprint of the settings (the resolved config without the keys that do not change
what is drawn: ``debug``, ``cache``, ``images.batch_size``, ``output.dir``, ``output.overwrite``) when the first image
is finished (a run that failed before that leaves the folder free); every finished image appends one line to
``.featvis/done.jsonl`` with what the manifest needs and every file it wrote. A run into a folder made with the
same settings skips the images whose files are all there and ends with one manifest covering everything; a folder
made with other settings is refused (naming the keys that differ) unless ``output.overwrite=true``, which first
removes the files the earlier run recorded (only those, and only inside the folder).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featvis_run.errors import ConfigError, OutputError
from featvis_run.hashing import stable_hash
from featvis_run.store.outputs import jsonable, write_json
from featvis_run.store.owned_paths import confine, entry_paths, manifest_paths, remove_files, remove_temp_leftovers

__all__ = [
    "FORMAT",
    "IGNORED_KEYS",
    "RUN_NAMES",
    "RunFolder",
    "check_settings",
    "claim_folder",
    "differing_keys",
    "flatten",
    "is_run_folder",
    "remove_run",
    "settings_of",
]

#: keys that do not change what a run draws: runs that differ only in these share a folder
IGNORED_KEYS = ("debug", "cache", "images.batch_size", "output.dir", "output.overwrite", "hydra")
#: the version of the run-folder layout written in the marker (1: earlier versions, which wrote no marker)
FORMAT = 2
_STATE = ".featvis"
_MARKER = f"{_STATE}/folder.json"
#: what Hydra writes into a run's folder before the job starts (the job's name is that of the ``cli`` module)
_HYDRA_NAMES = (".hydra", "cli.log")
#: the fixed files a run writes at the top of its folder (an experiment: manifest and index; mode=layers: layers)
_RUN_FILES = ("manifest.json", "index.html", "layers.json", "channels.csv", "channels.partial.npz")
#: names a run writes at the top of its folder besides its image folders: a folder holding one is not used unless
#: it is a run folder or ``output.overwrite=true``
RUN_NAMES = (*_RUN_FILES, "contact", "atlas", "pages", _STATE, *_HYDRA_NAMES)


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


def _run_manifest(out_dir: Path) -> dict[str, Any] | None:
    """``manifest.json`` if it is a featvis-run manifest (a ``config`` mapping, ``experiment`` and ``outputs``)."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
        if (
            isinstance(data, dict)
            and isinstance(data.get("config"), dict)
            and isinstance(data.get("experiment"), str)
            and isinstance(data.get("outputs"), list)
        ):
            return data
    return None


def _stored_settings(out_dir: Path) -> dict[str, Any] | None:
    """The settings of the run already in ``out_dir``: from its state file, else an earlier version's manifest."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        settings = json.loads((out_dir / _STATE / "run.json").read_text(encoding="utf-8"))["settings"]
        if isinstance(settings, dict):
            return settings
    manifest = _run_manifest(out_dir)
    return settings_of(manifest["config"]) if manifest is not None else None


def _marker(out_dir: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((out_dir / _MARKER).read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("made_by") == "featvis-run":
            return data
    return None


def is_run_folder(out_dir: Path) -> bool:
    """Whether featvis-run made ``out_dir``: its marker, or an earlier version's state file or manifest."""
    return _marker(out_dir) is not None or (out_dir / _STATE / "run.json").is_file() or bool(_run_manifest(out_dir))


def _foreign(out_dir: Path) -> list[str]:
    """The top-level names of ``out_dir`` that featvis-run did not write (recorded in its marker)."""
    marker = _marker(out_dir) or {}
    names = marker.get("foreign", [])
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def _refuse(out_dir: Path, names: Iterable[str], what: str) -> ConfigError:
    """The one-line error for a folder featvis-run did not make that holds ``names`` where a run writes."""
    listed = sorted(names)
    shown = ", ".join(listed[:4]) + (", ..." if len(listed) > 4 else "")
    return ConfigError(
        f"output.dir={str(out_dir)!r} {what} {shown}, which this run would write over; choose an empty or new "
        "output.dir, or add output.overwrite=true to replace those files (nothing else in it is removed)"
    )


def claim_folder(out_dir: Path, overwrite: bool, hydra_started: bool = False) -> None:
    """Make ``out_dir`` a run folder (write its marker), unless it already is one.

    A folder that featvis-run did not make is used if it is empty or holds none of :data:`RUN_NAMES` (the run only
    adds files), or with ``overwrite``; what it held is recorded as foreign, never removed. ``hydra_started``: the
    job runs inside Hydra, which has written its own ``.hydra/`` and log into the folder already.

    Raises:
        ConfigError: a folder featvis-run did not make holds a name a run writes, and ``overwrite`` is False.
    """
    if _marker(out_dir) is not None:
        return
    foreign: list[str] = []
    if not is_run_folder(out_dir):
        with contextlib.suppress(OSError):
            foreign = sorted(os.listdir(out_dir))
        if hydra_started:
            foreign = [n for n in foreign if n not in _HYDRA_NAMES]
        clash = [n for n in foreign if n in RUN_NAMES]
        if clash and not overwrite:
            raise _refuse(out_dir, clash, "is not a featvis-run run folder and holds")
    _write_marker(out_dir, foreign)


def _write_marker(out_dir: Path, foreign: list[str]) -> None:
    write_json(out_dir / _MARKER, {"made_by": "featvis-run", "format": FORMAT, "foreign": foreign})


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


def _outside_note(count: int, where: str) -> str:
    return f"ignored {count} path(s) outside the run folder in {where} (neither read nor removed)"


@dataclass
class RunFolder:
    """The state of a run in ``out_dir``: what was already finished (``done``, by image id, in order), and notes on
    what was ignored or cleaned up when it was opened."""

    out_dir: Path
    settings: dict[str, Any]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    resumed: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls, out_dir: Path, resolved: Mapping[str, Any], overwrite: bool = False, names: Iterable[str] = ()
    ) -> RunFolder:
        """Start or resume the run with ``resolved`` settings in ``out_dir``; ``names``: the top-level folders the
        run writes (its images'), which must not be among the files the folder held before featvis-run used it.

        Raises:
            ConfigError: the folder holds a run with other settings, or files featvis-run did not write where the
                run writes, and ``overwrite`` is False.
        """
        claim_folder(out_dir, overwrite, hydra_started=True)
        foreign = _foreign(out_dir)
        taken = set(names) & set(foreign)
        if taken and not overwrite:
            raise _refuse(out_dir, taken, "holds files featvis-run did not write:")
        if taken:  # replaced with the user's consent: the run's own folders from now on (resumable)
            foreign = [n for n in foreign if n not in taken]
            _write_marker(out_dir, foreign)
        settings = settings_of(resolved)
        same = check_settings(out_dir, resolved, overwrite)
        folder = cls(out_dir, settings)
        if not same and _stored_settings(out_dir) is not None:
            ignored = remove_run(out_dir)
            folder.notes += [_outside_note(ignored, "the earlier run's records")] if ignored else []
        if same:
            folder.done, ignored = _read_journal(out_dir / _STATE / "done.jsonl", out_dir)
            folder.resumed = True
            folder.notes += [_outside_note(ignored, f"{_STATE}/done.jsonl")] if ignored else []
        leftovers = remove_temp_leftovers(out_dir, foreign)
        if leftovers:
            folder.notes.append(f"removed {leftovers} temp file(s) left by an interrupted write")
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
            state = {"fingerprint": stable_hash(self.settings), "settings": self.settings, "format": FORMAT}
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


def _read_journal(path: Path, out_dir: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The journal's entries by image id (a torn last line from a killed run is skipped; an entry naming a path
    outside ``out_dir`` is dropped, so its image is drawn again), and how many such paths were ignored."""
    entries: dict[str, dict[str, Any]] = {}
    ignored = 0
    for entry in _read_journal_raw(path):
        outside = confine(out_dir, entry_paths(entry)).ignored
        ignored += outside
        if not outside and isinstance(entry.get("image_id"), str):
            entries[entry["image_id"]] = entry
    return entries, ignored


def remove_run(out_dir: Path) -> int:
    """Remove the files the earlier run in ``out_dir`` recorded (its journal's, its manifest's, its fixed files and
    state) that lie inside ``out_dir``, and the folders this empties; anything else stays. Returns how many recorded
    paths were ignored for lying outside."""
    names: list[Any] = [n for n in _RUN_FILES if n not in _foreign(out_dir)]
    names += [f"{_STATE}/run.json", f"{_STATE}/done.jsonl"]
    for entry in _read_journal_raw(out_dir / _STATE / "done.jsonl"):
        names += entry_paths(entry)
    manifest = _run_manifest(out_dir)
    if manifest is not None:
        names += manifest_paths(manifest)
    confined = confine(out_dir, names)
    remove_files(out_dir, confined.paths)
    return confined.ignored


def _read_journal_raw(path: Path) -> list[dict[str, Any]]:
    """Every parseable entry of the journal (a torn last line from a killed run is skipped), paths unchecked."""
    entries: list[Any] = []
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
    return [e for e in entries if isinstance(e, dict)]
