"""The report page as one self-contained HTML file: the template (``page.html``, ``page.css``, ``page.js``, package
data) with the page's data inlined as JSON in a ``<script type="application/json">``.

The page works from ``file://`` with no server: no network, no fetch, no ``http(s)://`` anywhere in it. A run whose
inlined data would exceed :data:`SPLIT_BYTES` (or that has more than :data:`SPLIT_IMAGES` images) gets one page per
image under ``pages/`` and an index page linking them.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from featvis_run.store.outputs import jsonable, safe_name, write_bytes

__all__ = [
    "COLORMAPS",
    "SPLIT_BYTES",
    "SPLIT_IMAGES",
    "colormap_tables",
    "embed_json",
    "page_html",
    "split_pages",
    "summarise_ranges",
]

#: inlined data above this size (bytes) splits a run's page into one page per image
SPLIT_BYTES = 12_000_000
#: more images than this split a run's page into one page per image
SPLIT_IMAGES = 16
#: the colormaps every page offers (the run's ``output.colormap`` is added when it is another OpenCV colormap)
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "grey")


def colormap_tables(extra: str | None = None) -> dict[str, str]:
    """256 RGB colours per colormap, base64 of 768 bytes, from OpenCV (the colours of the composite pictures)."""
    names = list(COLORMAPS) + ([extra] if extra and extra not in COLORMAPS else [])
    ramp = np.arange(256, dtype=np.uint8)[:, None]
    out = {}
    for name in names:
        if name == "grey":
            rgb = np.repeat(ramp, 3, axis=1)
        else:
            code = getattr(cv2, f"COLORMAP_{name.upper()}", None)
            if code is None:
                continue
            rgb = cv2.applyColorMap(ramp, code)[:, 0, ::-1]
        out[name] = base64.b64encode(np.ascontiguousarray(rgb, np.uint8).tobytes()).decode("ascii")
    return out


def embed_json(data: Any) -> str:
    """Strict JSON safe inside ``<script>``: ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, and ``://`` written
    ``:\\/\\/`` (so that no ``http(s)://`` appears in the page; JSON reads ``\\/`` as ``/``)."""
    text = json.dumps(jsonable(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(raw, escaped)
    return text.replace("\u2029", "\\u2029").replace("://", ":\\/\\/")


def _template(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def page_html(data: Mapping[str, Any], title: str) -> str:
    """The page: the template with ``data`` inlined and ``title`` in its head."""
    safe_title = html.escape(title).replace(":", "&#58;")
    page = _template("page.html")
    for key, value in (
        ("__TITLE__", safe_title),
        ("__CSS__", _template("page.css")),
        ("__JS__", _template("page.js")),
        ("__DATA__", embed_json(data)),
    ):
        page = page.replace(key, value, 1)
    return page


def summarise_ranges(maps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the colour-scale modes need of maps not on a page: each map's role, image, layer, level, job and
    finite range."""
    keys = ("role", "image", "layer", "level", "job", "checkpoint", "range")
    return [{k: m.get(k) for k in keys} for m in maps if m.get("range")]


def split_pages(data: Mapping[str, Any]) -> bool:
    """Whether a run's page is split into one page per image (see :data:`SPLIT_BYTES`, :data:`SPLIT_IMAGES`)."""
    size = sum(len(m.get("values", "")) + len((m.get("features") or {}).get("values", "")) for m in data["maps"])
    return len(data["images"]) > SPLIT_IMAGES or size > SPLIT_BYTES


def image_page_name(image_id: str) -> str:
    """The file of an image's own page, relative to the run folder."""
    return f"pages/{safe_name(image_id)}.html"


def write_pages(out_dir: Path, data: dict[str, Any], title: str) -> list[str]:
    """Write ``index.html`` (and ``pages/<image>.html`` for a split run) into ``out_dir``; returns the files written,
    relative to ``out_dir``."""
    if not split_pages(data):
        write_bytes(out_dir / "index.html", page_html(data, title).encode("utf-8"))
        return ["index.html"]
    outer = summarise_ranges(data["maps"])
    written = []
    for image in data["images"]:
        name = image_page_name(image["id"])
        one = dict(data, images=[image], maps=[m for m in data["maps"] if m["image"] == image["id"]])
        one |= {"outer": outer, "split": "image", "base": "../"}  # the page's links start one folder up
        one["links"] = [{"label": "index of all images", "href": "index.html"}, *data["links"]]
        write_bytes(out_dir / name, page_html(one, f"{title}: {image['id']}").encode("utf-8"))
        written.append(name)
    index = dict(data, maps=[], outer=outer, split="index")
    index["pages"] = [{"image": i["id"], "href": image_page_name(i["id"])} for i in data["images"]]
    write_bytes(out_dir / "index.html", page_html(index, title).encode("utf-8"))
    return ["index.html", *written]
