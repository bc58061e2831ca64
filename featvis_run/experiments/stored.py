"""What ``output.pictures=maps|both`` stores besides the map arrays: the input image once per image (a JPEG no
larger than the network input, ``<image>/image.jpg``), the colour range of a map that is not drawn, and the caption
of a picture that is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from featvis_run.drawing.colour import finite_range
from featvis_run.maps.geometry import Geometry
from featvis_run.maps.reduce import ReducedMap
from featvis_run.store.outputs import safe_name, write_bytes

__all__ = [
    "IMAGE_FILE",
    "JPEG_QUALITY",
    "image_file",
    "map_caption",
    "map_scales",
    "stored_image_hw",
    "write_input_image",
]

IMAGE_FILE = "image.jpg"
#: JPEG quality of the stored input: 90 keeps edges clean under a half-transparent map (about 0.1-0.3 MB at 1333x800)
JPEG_QUALITY = 90

Range = tuple[float, float]


def stored_image_hw(geometry: Geometry) -> tuple[int, int]:
    """(H, W) of the stored input image: the original's aspect, shrunk (never enlarged) to the resized image the
    network saw and to the network input, whichever is smaller."""
    (oh, ow), (ih, iw), (nh, nw) = geometry.ori_hw, geometry.img_hw, geometry.input_hw
    s = min(1.0, ih / oh, iw / ow, nh / oh, nw / ow)
    return max(1, min(nh, int(oh * s + 0.5))), max(1, min(nw, int(ow * s + 0.5)))


def image_file(image_id: str) -> str:
    """The run-folder-relative path of an image's stored input picture."""
    return f"{safe_name(image_id)}/{IMAGE_FILE}"


def write_input_image(out_dir: Path, image_id: str, image: np.ndarray, hw: tuple[int, int]) -> Path:
    """Write the BGR ``image`` shrunk to ``hw`` as ``<image>/image.jpg`` (quality :data:`JPEG_QUALITY`)."""
    small = image
    if tuple(image.shape[:2]) != tuple(hw):
        small = cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV always encodes a BGR uint8 image
        raise RuntimeError("OpenCV could not encode the input image as JPEG")
    return write_bytes(out_dir / image_file(image_id), buf.tobytes())


def map_scales(reduced: ReducedMap, value_range: Range | None) -> tuple[Range | None, tuple[Range | None, ...]]:
    """The colour range a reduced map would be drawn with (as the picture's record says): the given range, else a
    single or RGB map's finite min-max, else (a top-k grid) None with each tile's min-max."""
    if value_range is not None:
        return (float(value_range[0]), float(value_range[1])), ()
    if reduced.kind == "grid":
        return None, tuple(finite_range(m) for m in reduced.maps)
    return finite_range(reduced.maps), ()


def _number(v: float) -> str:
    return f"{v:.3g}"


def map_caption(
    layer: str, level: str, reducer: str, scale: Range | None, tile_scales: Sequence[Range | None] = ()
) -> str:
    """A picture's caption: ``neck / p3  squeeze_mean  colours 0.12 .. 3.4`` (``each tile min-max`` for a grid
    scaled per tile)."""
    if scale is not None:
        colours = f"colours {_number(scale[0])} .. {_number(scale[1])}"
    else:
        colours = "each tile min-max" if tile_scales else "no finite values"
    return f"{layer} / {level}  {reducer}  {colours}"
