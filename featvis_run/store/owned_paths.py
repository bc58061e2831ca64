"""Paths read from a run's own records (its manifest and journal), kept inside the run folder.

A record is data that anyone can edit: every path read from one is resolved (symbolic links followed) and used
only if it stays inside the run folder; an absolute path, a ``..`` escape or a link leading out is ignored and
counted, so the caller can say so. Removing an earlier run's files removes only such paths, only files, and only
the folders it empties inside the run folder.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Confined", "confine", "entry_paths", "manifest_paths", "remove_files", "remove_temp_leftovers"]

#: the temp file :func:`featvis_run.store.outputs.write_bytes` writes before its rename: ``.<name>.<8 random>.tmp``
#: (``tempfile.mkstemp``'s random part: 8 of ``a-z``, ``0-9``, ``_``)
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


@dataclass(frozen=True)
class Confined:
    """The paths of a record that lie inside the run folder (resolved), and how many others were ignored."""

    paths: tuple[Path, ...]
    ignored: int


def confine(root: Path, names: Iterable[Any]) -> Confined:
    """``names`` (relative paths from a record) resolved under ``root``; any that is not a non-empty relative path
    resolving inside ``root`` (after following links) is ignored and counted."""
    base = root.resolve()
    paths: list[Path] = []
    ignored = 0
    for name in names:
        if not isinstance(name, str) or not name or os.path.isabs(name) or "\x00" in name:
            ignored += 1
            continue
        try:
            path = (base / name).resolve()
        except (OSError, RuntimeError):  # a link loop
            ignored += 1
            continue
        if path == base or not path.is_relative_to(base):
            ignored += 1
            continue
        paths.append(path)
    return Confined(tuple(paths), ignored)


def _files_of(items: Any, keys: tuple[str, ...]) -> Iterator[Any]:
    """The values under ``keys`` of each mapping in ``items``, and the ``file`` of each of their saved arrays."""
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, Mapping):
            continue
        yield from (item[k] for k in keys if item.get(k))
        arrays = item.get("arrays")
        if isinstance(arrays, Mapping):
            yield from (a.get("file") for a in arrays.values() if isinstance(a, Mapping))


def entry_paths(entry: Mapping[str, Any]) -> list[Any]:
    """Every path a journal entry names: its ``files``, and the files of its outputs and comparisons."""
    files = entry.get("files", [])
    names = list(files) if isinstance(files, list) else [files]
    names += _files_of(entry.get("outputs"), ("file",))
    names += _files_of(entry.get("comparisons"), ("diff_file", "panel_file"))
    names += _files_of([entry.get("image")], ("image_file",))
    return names


def manifest_paths(manifest: Mapping[str, Any]) -> list[Any]:
    """Every file a manifest lists: pictures and arrays, contact sheets, comparisons, checkpoint sequences, stored
    photos and report pages, and the analysis's tables and atlas."""
    names = list(_files_of(manifest.get("outputs"), ("file",)))
    names += _files_of(manifest.get("contact_sheets"), ("file",))
    names += _files_of(manifest.get("comparisons"), ("diff_file", "panel_file"))
    names += _files_of(manifest.get("images"), ("image_file",))
    pages = manifest.get("pages")
    names += pages if isinstance(pages, list) else []  # the report's pages/<image>.html of a large run
    for level in manifest.get("levels", ()) if isinstance(manifest.get("levels"), list) else ():
        if isinstance(level, Mapping):
            frames = level.get("frames")
            names += frames if isinstance(frames, list) else []
            names += [level[k] for k in ("gif", "strip", "change_plot") if level.get(k)]
    analysis = manifest.get("analysis")
    files = analysis.get("files") if isinstance(analysis, Mapping) else None
    names += files if isinstance(files, list) else []  # channels.csv, its partial sums, the atlas
    return names


def remove_files(root: Path, paths: Iterable[Path]) -> int:
    """Remove the files among ``paths`` (confined ones, see :func:`confine`) and then each folder this leaves empty,
    up to but not including ``root``; returns how many files went. Folders are never removed with what is in them."""
    base = root.resolve()
    removed = 0
    for path in sorted(set(paths)):
        if not path.is_relative_to(base) or path == base:
            continue
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed += 1
        for parent in path.parents:
            if parent == base or not parent.is_relative_to(base):
                break
            try:
                parent.rmdir()  # only an empty folder goes
            except OSError:
                break
    return removed


def remove_temp_leftovers(root: Path, skip: Iterable[str] = ()) -> int:
    """Remove the temp files a killed writer left in ``root`` (names matching :data:`TEMP_NAME` exactly), outside
    the top-level entries ``skip`` (files that were there before featvis-run); returns how many went."""
    skipped = set(skip) | {".hydra"}
    removed = 0
    for folder, dirs, files in os.walk(root):  # links to folders are not followed
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in skipped]
            files = [f for f in files if f not in skipped]
        for name in files:
            path = Path(folder) / name
            if TEMP_NAME.match(name) and path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
    return removed
