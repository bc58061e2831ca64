"""The photo under the page's maps: ``<image>/image.jpg``, stored once per image when the run did not store one
(``output.pictures=composite``). It is read from the run's own input (never from a path its records alone name),
shrunk to at most the resized network-input image, and JPEG-compressed."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2

from featvis_run.errors import FeatvisError
from featvis_run.store.images import load_image
from featvis_run.store.manifest import ImageRecord
from featvis_run.store.outputs import safe_name, write_bytes

__all__ = ["PHOTO_QUALITY", "photo_size", "store_photos"]

#: JPEG quality of the stored photo
PHOTO_QUALITY = 85
#: the longest side of a stored photo, at most (the page shows maps at feature resolution: more adds nothing)
PHOTO_MAX_SIDE = 1280


def photo_size(ori_hw: Sequence[int], img_hw: Sequence[int] | None) -> tuple[int, int]:
    """(H, W) of the stored photo: the original's, shrunk to the resized network-input image and to
    :data:`PHOTO_MAX_SIDE`, never enlarged."""
    h, w = int(ori_hw[0]), int(ori_hw[1])
    limit = min(PHOTO_MAX_SIDE / max(h, w), 1.0)
    if img_hw:
        limit = min(limit, max(img_hw[0] / h, img_hw[1] / w))
    return max(1, round(h * limit)), max(1, round(w * limit))


def store_photos(
    out_dir: Path, images: Sequence[ImageRecord], sources: Mapping[str, str], max_pixels: int | None
) -> list[ImageRecord]:
    """``images`` with ``image_file``/``image_file_hw`` set, writing ``<image>/image.jpg`` for each that has none.

    Args:
        out_dir: the run folder.
        images: the run's image records.
        sources: the run's inputs (image id -> absolute path); an image is read only when its record names the same
            file as its input (a record naming another file is left without a photo).
        max_pixels: ``images.max_pixels``.
    """
    out = []
    for image in images:
        source = sources.get(image.id or "")
        if image.image_file or source is None or source != image.path:
            out.append(image)
            continue
        try:
            array = load_image(Path(source), "image", max_pixels).array
        except FeatvisError:
            out.append(image)
            continue
        img_hw = (image.geometry or {}).get("img_hw")
        h, w = photo_size(array.shape[:2], img_hw)
        if (h, w) != tuple(array.shape[:2]):
            array = cv2.resize(array, (w, h), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, PHOTO_QUALITY])
        if not ok:
            out.append(image)
            continue
        rel = f"{safe_name(image.id or '')}/image.jpg"
        write_bytes(out_dir / rel, buf.tobytes())
        out.append(dataclasses.replace(image, image_file=rel, image_file_hw=(h, w)))
    return out
