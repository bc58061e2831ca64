"""Writing run outputs: atomic (temp file, fsync, rename), strict JSON, in a folder structured by image, layer and
level. A write that fails (full disk, permissions) leaves no temp file behind and raises one :class:`OutputError`."""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from featvis_run.errors import InputError, OutputError

__all__ = ["ensure_writable_dir", "jsonable", "safe_name", "write_array", "write_bytes", "write_image", "write_json"]


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


def write_bytes(
    path: Path, data: bytes, overwrite: bool = True, tmp_dir: Path | None = None, durable: bool = True
) -> Path:
    """Write ``data`` to ``path`` atomically and return the path written.

    Args:
        path: the target file (its folder is created).
        data: the bytes.
        overwrite: replace an existing file; if False, keep it and write ``name-1.ext``, ``name-2.ext``, ...
        tmp_dir: where the temp file goes (same filesystem; default: the target's folder).
        durable: fsync before the rename; False for many small files a rerun rewrites anyway (still atomic).

    Raises:
        OutputError: the file cannot be written (its temp file is removed).
    """
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=tmp_dir or path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
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
    except OSError as err:
        raise OutputError(
            f"cannot write {str(path)!r}: {err.strerror or err}; free some space or choose another output.dir=..."
        ) from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    raise AssertionError("unreachable")


def write_image(path: Path, image: np.ndarray) -> Path:
    """Encode a BGR image by ``path``'s extension and write it atomically (replacing a file of the same run)."""
    ok, buf = cv2.imencode(path.suffix, image)
    if not ok:
        raise InputError(f"OpenCV cannot encode an image as {path.suffix!r}; use output.format=png or jpg")
    return write_bytes(path, buf.tobytes())


def write_array(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as a ``.npy`` file (numpy's format, loadable with ``numpy.load``) atomically."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return write_bytes(path, buf.getvalue())


def jsonable(obj: Any) -> Any:
    """``obj`` as strict-JSON values: numpy scalars and arrays as numbers and lists, paths and enums as strings,
    dataclass-free containers recursed, and every NaN or infinity as None (``null``)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "value"):  # enums
        return jsonable(obj.value)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def write_json(path: Path, obj: Any, overwrite: bool = True) -> Path:
    """Write strict JSON atomically (indented, UTF-8; NaN and infinities become null)."""
    text = json.dumps(jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return write_bytes(path, (text + "\n").encode("utf-8"), overwrite=overwrite)
