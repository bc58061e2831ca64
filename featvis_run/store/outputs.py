"""Writing run outputs: atomic, never overwriting, in a folder structured by image, layer and level."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from featvis_run.errors import InputError

__all__ = ["ensure_writable_dir", "safe_name", "write_bytes", "write_image", "write_json"]


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (keeps letters, digits, ``.-_=,``)."""
    cleaned = re.sub(r"[^\w.\-=,]+", "_", text).strip("._")
    return cleaned or "_"


def ensure_writable_dir(path: Path, what: str = "output.dir") -> Path:
    """Create ``path`` if needed and check that files can be created in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as err:
        raise InputError(
            f"{what}={str(path)!r} is not a writable folder ({err.strerror or err}); choose another with {what}=..."
        ) from err
    return path


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 minus the umask); mkstemp's own 0o600 would hide shared
    caches and galleries from other users."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def _candidates(path: Path) -> Any:
    yield path
    n = 1
    while True:
        yield path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1


def write_bytes(path: Path, data: bytes, overwrite: bool = False) -> Path:
    """Write atomically (temp file, fsync, then link/rename). Without ``overwrite`` an existing file is kept and
    the data goes to ``name-1.ext``, ``name-2.ext``, ...; returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
            return path
        for cand in _candidates(path):
            try:
                os.link(tmp, cand)  # atomic, and fails instead of replacing an existing file
                return cand
            except FileExistsError:
                continue
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    raise AssertionError("unreachable")


def write_image(path: Path, image: np.ndarray) -> Path:
    """Encode a BGR image by ``path``'s extension and write it atomically, never overwriting."""
    ok, buf = cv2.imencode(path.suffix, image)
    if not ok:
        raise InputError(f"OpenCV cannot encode an image as {path.suffix!r}; use output.format=png or jpg")
    return write_bytes(path, buf.tobytes())


def write_json(path: Path, obj: Any, overwrite: bool = False) -> Path:
    """Write JSON atomically (indented, UTF-8)."""
    text = json.dumps(obj, indent=2, default=_jsonable, ensure_ascii=False)
    return write_bytes(path, (text + "\n").encode("utf-8"), overwrite=overwrite)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "value"):  # enums
        return obj.value
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
