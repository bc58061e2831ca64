"""Reading input images (BGR, as mmdet's pipeline expects) with clear errors."""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from featvis_run.errors import ConfigError, InputError
from featvis_run.paths import DEMO_SCENE
from featvis_run.schema import ImagesConfig

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_ASPECT",
    "MIN_SIDE",
    "InputImage",
    "LoadedImage",
    "check_size",
    "collect_images",
    "demo_image_path",
    "jpeg_damage",
    "load_image",
    "read_image",
    "select_images",
]

T = TypeVar("T")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# images.max_pixels' default, 50 MP. Measured on the demo model (2 drawing threads): a run holds about 40 bytes per
# input pixel (the BGR image, image-sized heat maps and overlays), so 50 MP is about 2 GB on top of the model. It
# admits every common camera (45-50 MP); larger scans need images.max_pixels raised (or null for no limit).
DEFAULT_MAX_PIXELS: int | None = ImagesConfig.max_pixels
MIN_SIDE = 8  # px: smaller images carry no structure to map
MAX_ASPECT = 64  # longer side / shorter side: beyond it a resize to the model's scale leaves a side of a few pixels
_PIL_LOCK = threading.Lock()


@dataclass(frozen=True)
class InputImage:
    """A decoded input image with its output folder name and the sha256 of its file (part of the cache key)."""

    image_id: str
    path: Path
    array: np.ndarray
    sha256: str
    notes: tuple[str, ...] = ()  # e.g. a damaged JPEG drawn as far as it decodes
    box: tuple[float, float, float, float] | None = None  # a pose model's person box (x1, y1, x2, y2); None: whole


@dataclass(frozen=True)
class LoadedImage:
    """What :func:`load_image` read: the BGR array, the sha256 of the file's bytes, and notes on its state."""

    array: np.ndarray
    sha256: str
    notes: tuple[str, ...] = ()


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


def _header(data: bytes) -> tuple[int, int, str] | None:
    """(width, height, format) from the image's header, without decoding its pixels; None if PIL cannot tell.
    PIL's own decompression-bomb limit is lifted for the look (the caller applies ``images.max_pixels``)."""
    from PIL import Image

    with _PIL_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1]), str(im.format or "")
        except Exception:  # noqa: BLE001 - not an image PIL knows: OpenCV decides below
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def check_size(width: int, height: int, label: str, max_pixels: int | None) -> None:
    """Refuse an image too large for ``images.max_pixels`` or of a shape no model pipeline can resize."""
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            f"{label} is {width}x{height} = {width * height / 1e6:.1f} MP, more than images.max_pixels={max_pixels}; "
            "downscale it, or raise images.max_pixels (a run needs about 40 bytes of memory per pixel)"
        )
    short, long = min(width, height), max(width, height)
    if short < MIN_SIDE or long > MAX_ASPECT * short:
        raise InputError(
            f"{label} is {width}x{height}: too small or elongated to map (each side needs at least {MIN_SIDE} px "
            f"and the longer at most {MAX_ASPECT} times the shorter); crop or pad it"
        )


def jpeg_damage(data: bytes) -> str | None:
    """Why a JPEG file is damaged, or None when its markers run cleanly to the end-of-image marker (bytes after it,
    such as a phone's appended video, are allowed). Walks the segments and the entropy-coded data of each scan."""
    n, pos = len(data), 2
    while True:
        if pos + 2 > n:
            return f"its data ends at byte {n} before the end-of-image marker (truncated file)"
        if data[pos] != 0xFF or (data[pos + 1] < 0xC0 and data[pos + 1] != 0x01):
            return f"it holds bytes that are not JPEG data at byte {pos} of {n}"
        marker = data[pos + 1]
        if marker == 0xD9:
            return None
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 1 if marker == 0xFF else 2  # fill byte, or a marker without a length
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big") if pos + 4 <= n else 0
        if length < 2:
            return f"its data ends at byte {n} before the end-of-image marker (truncated file)"
        pos += 2 + length
        if marker != 0xDA:
            continue
        while True:  # entropy-coded data: 0xFF only as FF00 (a stuffed byte), a restart marker, fill, or a marker
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= n:
                return f"its data ends at byte {n} before the end-of-image marker (truncated file)"
            following = data[pos + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                pos += 2
            elif following == 0xFF:
                pos += 1
            else:
                break


def _decode_damaged_jpeg(data: bytes) -> np.ndarray | None:
    """A damaged JPEG decoded as far as it goes (the rest grey), by PIL, which reports no libjpeg warnings on
    stderr; EXIF orientation applied as OpenCV does. An end-of-image marker is appended for a truncated file."""
    from PIL import Image, ImageOps

    with _PIL_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the size was checked already
        try:
            with Image.open(io.BytesIO(data + b"\xff\xd9")) as im:
                rgb = ImageOps.exif_transpose(im).convert("RGB")
            return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
        except Exception:  # noqa: BLE001 - too damaged: reported as not decodable
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def load_image(path: Path, key: str = "image", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``path`` as a BGR uint8 image, refusing (before decoding) one larger than ``max_pixels`` or of a
    degenerate shape; a damaged JPEG is decoded as far as it goes, with a note."""
    if not path.exists():
        raise InputError(f"{key}={str(path)!r}: no such file; give the path of a .jpg/.png image")
    if path.is_dir():
        raise InputError(f"{key}={str(path)!r} is a folder; give one image file (folders: experiment=multi_image)")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError(f"{key}={str(path)!r} cannot be read ({err.strerror or err}); check its permissions") from err
    label = f"{key}={str(path)!r}"
    header = _header(data) if data else None
    if header is not None:
        check_size(header[0], header[1], label, max_pixels)
    notes: list[str] = []
    damage = jpeg_damage(data) if header is not None and header[2] in ("JPEG", "MPO") else None
    try:
        if damage is not None:
            image = _decode_damaged_jpeg(data)
            notes.append(f"the JPEG file is damaged: {damage}; drawn as far as it decodes (the rest may be grey)")
        else:
            image = _decode(data) if data else None
    except (cv2.error, MemoryError) as err:  # e.g. out of memory with images.max_pixels=null
        reason = str(err).split("error: ", 1)[-1].strip() or type(err).__name__
        raise InputError(f"{label} could not be decoded ({reason}); downscale it or check images.max_pixels") from None
    if image is None:
        raise InputError(f"{label} is not an image OpenCV can decode; give a {'/'.join(IMAGE_EXTENSIONS)} file")
    if header is None:  # a format only OpenCV reads: checked after decoding
        check_size(image.shape[1], image.shape[0], label, max_pixels)
    return LoadedImage(image, hashlib.sha256(data).hexdigest(), tuple(notes))


def read_image(path: Path, key: str = "image", max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, str]:
    """Decode ``path`` as a BGR uint8 image and return it with the sha256 of the file's bytes (see
    :func:`load_image`, which also returns notes on a damaged file)."""
    loaded = load_image(path, key, max_pixels)
    return loaded.array, loaded.sha256


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
