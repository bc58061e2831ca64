"""Reading input images (BGR, as mmdet's pipeline expects) with clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from featvis_run.errors import InputError
from featvis_run.paths import PACKAGE_DIR

__all__ = ["IMAGE_EXTENSIONS", "demo_image_path", "load_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def demo_image_path() -> Path:
    """The demo scene shipped with the package (the default ``image``)."""
    return PACKAGE_DIR / "assets" / "demo_scene.png"


def load_image(path: Path, key: str = "image") -> np.ndarray:
    """Decode ``path`` as a BGR uint8 image; ``key`` names the config key in error messages."""
    if not path.exists():
        raise InputError(f"{key}={str(path)!r}: no such file; give the path of a .jpg/.png image")
    if path.is_dir():
        raise InputError(f"{key}={str(path)!r} is a folder; give one image file (folders: experiment=multi_image)")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise InputError(f"{key}={str(path)!r} cannot be read ({err.strerror or err}); check its permissions") from err
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError(
            f"{key}={str(path)!r} is not an image OpenCV can decode; give a {'/'.join(IMAGE_EXTENSIONS)} file"
        )
    return image
