"""Content hashes: of JSON-like values (cache keys, model identities) and of files (checkpoints, images).

A checkpoint's sha256 is part of every cache key, and hashing a 150 MB file takes about 0.3 s: digests are kept by
(real path, size, modification time) in memory and in ``$XDG_CACHE_HOME/featvis-run/digests.json`` (default
``~/.cache``), so each job of a sweep, in this process or another, hashes a file only once. A file replaced by one
of the same size and modification time to the nanosecond would keep its old digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["digest_store", "file_sha256", "file_sha256_cached", "stable_hash"]

_MEMO: dict[tuple[str, int, int], str] = {}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON rendering with sorted keys (non-JSON values via ``str``)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in 1 MB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def digest_store() -> Path:
    """Where digests are kept between processes."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "featvis-run" / "digests.json"


def _read_store(store: Path) -> tuple[dict[str, str], str | None]:
    """The digests kept in ``store`` and, when it held anything else, what was wrong (the caller rebuilds it)."""
    try:
        text = store.read_bytes()
    except OSError:
        return {}, None  # missing (first use) or unreadable: nothing known
    try:
        loaded = json.loads(text)
    except ValueError:
        return {}, "it is not JSON"
    if not isinstance(loaded, dict):
        return {}, f"it holds a JSON {type(loaded).__name__}, not an object"
    known = {k: v for k, v in loaded.items() if isinstance(v, str) and _SHA256.fullmatch(v)}
    bad = len(loaded) - len(known)
    return known, f"{bad} of its {len(loaded)} entries are not sha256 digests" if bad else None


def file_sha256_cached(path: Path, store: Path | None = None, notes: list[str] | None = None) -> str:
    """:func:`file_sha256`, remembered by (real path, size, mtime) in memory and in ``store`` (best effort). A
    store holding anything but digests is rebuilt, with a note appended to ``notes``."""
    st = path.stat()
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    if key in _MEMO:
        return _MEMO[key]
    store = store or digest_store()
    text_key = f"{key[0]}|{key[1]}|{key[2]}"
    known, damage = _read_store(store)
    if damage is not None and notes is not None:
        notes.append(f"the checkpoint digest store {store} was damaged ({damage}); rebuilt it")
    digest = known.get(text_key) or file_sha256(path)
    if text_key not in known or damage is not None:
        known = {k: v for k, v in known.items() if not k.startswith(f"{key[0]}|")}  # older versions of the file
        known[text_key] = digest
        with contextlib.suppress(Exception):  # a read-only home only costs the next process a re-hash
            from featvis_run.store.outputs import write_bytes

            write_bytes(store, json.dumps(known, indent=0).encode())
    _MEMO[key] = digest
    return digest
