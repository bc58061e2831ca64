"""Reading input images (BGR, as mmdet's pipeline expects) with clear errors."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from featvis_run.errors import ConfigError, InputError
from featvis_run.paths import DEMO_SCENE

__all__ = ["IMAGE_EXTENSIONS", "InputImage", "collect_images", "demo_image_path", "read_image", "select_images"]

T = TypeVar("T")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class InputImage:
    """A decoded input image with its output folder name and the sha256 of its file (part of the cache key)."""

    image_id: str
    path: Path
    array: np.ndarray
    sha256: str


def demo_image_path() -> Path:
    """The demo scene shipped with the package (the default ``image``)."""
    return DEMO_SCENE


def _decode(data: bytes) -> np.ndarray | None:
    """cv2.imdecode without OpenCV's own log lines (a broken file is reported once, as an InputError)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    finally:
        cv2.utils.logging.setLogLevel(level)


def read_image(path: Path, key: str = "image") -> tuple[np.ndarray, str]:
    """Decode ``path`` as a BGR uint8 image and return it with the sha256 of the file's bytes."""
    if not path.exists():
        raise InputError(f"{key}={str(path)!r}: no such file; give the path of a .jpg/.png image")
    if path.is_dir():
        raise InputError(f"{key}={str(path)!r} is a folder; give one image file (folders: experiment=multi_image)")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{key}={str(path)!r} cannot be read ({err.strerror or err}); check its permissions") from err
    image = _decode(data) if data else None
    if image is None:
        raise InputError(
            f"{key}={str(path)!r} is not an image OpenCV can decode; give a {'/'.join(IMAGE_EXTENSIONS)} file"
        )
    return image, hashlib.sha256(data).hexdigest()


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _walk_images(root: Path) -> list[Path]:
    """Image files below ``root``, sorted; symlinked folders are followed, each real folder visited once (a link
    back to a parent does not loop)."""
    found, seen = [], set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        found += [Path(folder) / f for f in files if _is_image(Path(folder) / f)]
    return sorted(found)


def _expand(entry: str) -> list[Path]:
    path = Path(entry).expanduser()
    if any(ch in entry for ch in "*?["):
        return sorted(p for p in (Path(m) for m in glob.glob(str(path), recursive=True)) if p.is_file())
    if path.is_dir():
        return _walk_images(path)
    if path.exists():
        return [path]
    raise InputError(f"images={entry!r}: no such file or folder; give image files, a folder, or a glob 'dir/*.jpg'")


def collect_images(paths: str | Sequence[str] | None) -> list[Path]:
    """Expand ``images`` (a file, a folder searched recursively for image files, a glob, or a list of these)
    into a sorted, de-duplicated list; None gives the demo scene. Files that are not images are kept: they
    fail individually when read."""
    if paths is None:
        return [demo_image_path()]
    entries = [paths] if isinstance(paths, str) else [str(p) for p in paths]
    found: dict[Path, None] = {}
    for entry in entries:
        for p in _expand(entry):
            found.setdefault(p, None)
    if not found:
        raise InputError(f"images={paths!r} matched no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return list(found)


def select_images(paths: Sequence[T], limit: int | None, shard: str | None) -> list[T]:
    """Keep the first ``limit`` paths, then shard ``i/n``: every n-th path from the i-th (0-based)."""
    if limit is not None:
        if limit <= 0:
            raise ConfigError(f"images.limit={limit} must be a positive number of images (or null for all)")
        paths = paths[:limit]
    if shard is None:
        return list(paths)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(shard))
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ConfigError(f"images.shard={shard!r} must be i/n with 0 <= i < n, e.g. images.shard=0/4")
    i, n = int(match.group(1)), int(match.group(2))
    return list(paths[i::n])
