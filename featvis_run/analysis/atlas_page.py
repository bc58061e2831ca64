"""``atlas/index.html``: per recorded level, each channel's N images where it fires most, as small JPEG crops of
the region its peak cell covers (with a cell of context each side, the cell outlined, enlarged to a fixed height)
and the peak values; ``atlas/atlas.json`` holds the same table as data. The page is self-contained and offline;
its links are relative and URL-encoded."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from featvis_run.analysis.atlas import TopCell, TopCells, cell_box, context_box
from featvis_run.errors import InputError
from featvis_run.report.links import href
from featvis_run.store.images import load_image
from featvis_run.store.outputs import safe_name, write_bytes, write_json

__all__ = ["ATLAS_DIR", "CROP_HEIGHT", "AtlasWritten", "crop_picture", "write_atlas"]

ATLAS_DIR = "atlas"
CROP_HEIGHT = 96  # px: every crop is scaled to this height
_CONTEXT = 3.0  # the crop spans 3 x 3 cells around the peak cell
_JPEG_QUALITY = 85
_STYLE = (
    "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px;"
    "vertical-align:top;text-align:left}figure{display:inline-block;margin:2px}figure img{height:96px;display:block}"
    "figcaption{font-size:x-small}.dead{color:#b00;font-weight:bold}.none{color:#888}"
)


@dataclass(frozen=True)
class AtlasWritten:
    """The atlas page (relative to the run folder), every file written, and notes (images that could not be read)."""

    index: str
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def crop_picture(image: np.ndarray, box: tuple[float, float, float, float], height: int = CROP_HEIGHT) -> np.ndarray:
    """The region of ``image`` around cell ``box`` (x0, y0, x1, y1 in its pixels; see
    :func:`~featvis_run.analysis.atlas.context_box`), scaled to ``height`` with the cell outlined in yellow."""
    left, top, right, bottom = context_box(box, image.shape[:2], _CONTEXT)
    crop = image[top:bottom, left:right]
    scale = height / crop.shape[0]
    width = max(1, round(crop.shape[1] * scale))
    small = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    x0, y0 = round((box[0] - left) * scale), round((box[1] - top) * scale)
    x1, y1 = round((box[2] - left) * scale) - 1, round((box[3] - top) * scale) - 1
    cv2.rectangle(small, (x0, y0), (max(x0, x1), max(y0, y1)), (0, 255, 255), 1)
    return small


def _crop_name(key: tuple[str, str], channel: int, rank: int) -> str:
    return f"{safe_name(key[0])}/{safe_name(key[1])}/c{channel}_{rank}.jpg"


def write_atlas(
    out_dir: Path,
    tops: Mapping[tuple[str, str], TopCells],
    where: Mapping[int, tuple[str, object, object, Mapping[tuple[str, str], tuple[int, int]]]],
    ids: Sequence[str],
    dead: Mapping[tuple[str, str], Sequence[int]],
    max_pixels: int | None = None,
) -> AtlasWritten:
    """Cut every kept peak's crop (each image read once) and write ``atlas/index.html``.

    Args:
        out_dir: the run folder.
        tops: each level's kept peaks.
        where: by image position: its path, geometry, affine and each level's recorded (H, W).
        ids: the image ids by position.
        dead: the dead channels of each level (marked on the page; empty when statistics are off).
        max_pixels: ``images.max_pixels`` for reading the images again.
    """
    jobs: dict[int, list[tuple[tuple[str, str], int, int, TopCell]]] = {}
    for key, top in tops.items():
        for c in range(top.channels):
            for rank, cell in enumerate(top.ranked(c)):
                jobs.setdefault(cell.seq, []).append((key, c, rank, cell))
    written: set[str] = set()
    notes: list[str] = []
    for seq in sorted(jobs):
        path, geometry, affine, hws = where[seq]
        try:
            image = load_image(Path(path), "images", max_pixels).array
        except InputError as err:
            notes.append(f"atlas: no crops from image {ids[seq] if seq < len(ids) else seq}: {err}")
            continue
        for key, c, rank, cell in jobs[seq]:
            box = cell_box(cell.row, cell.col, hws[key], geometry, affine)  # type: ignore[arg-type]
            ok, buf = cv2.imencode(".jpg", crop_picture(image, box), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
            if ok:
                name = _crop_name(key, c, rank)
                write_bytes(out_dir / ATLAS_DIR / name, buf.tobytes(), durable=False)  # a rerun rewrites the atlas
                written.add(name)
    table = _table(tops, where, ids, written)
    write_json(out_dir / ATLAS_DIR / "atlas.json", table)
    page = _page(out_dir.name, tops, ids, dead, written)
    write_bytes(out_dir / ATLAS_DIR / "index.html", page.encode("utf-8"))
    index = f"{ATLAS_DIR}/index.html"
    files = [f"{ATLAS_DIR}/{name}" for name in sorted(written)]
    return AtlasWritten(index, [*files, f"{ATLAS_DIR}/atlas.json", index], notes)


def _table(
    tops: Mapping[tuple[str, str], TopCells],
    where: Mapping[int, tuple[str, object, object, Mapping[tuple[str, str], tuple[int, int]]]],
    ids: Sequence[str],
    written: set[str],
) -> dict[str, object]:
    """``atlas/atlas.json``: per level and channel, its top images best first: image id, value, the valid cell,
    the box it covers in original-image pixels (x0, y0, x1, y1) and the crop (relative to ``atlas/``, or null)."""
    levels = []
    for key, top in tops.items():
        channels = []
        for c in range(top.channels):
            peaks = []
            for rank, cell in enumerate(top.ranked(c)):
                _, geometry, affine, hws = where[cell.seq]
                box = cell_box(cell.row, cell.col, hws[key], geometry, affine)  # type: ignore[arg-type]
                name = _crop_name(key, c, rank)
                peaks.append(
                    {
                        "image": ids[cell.seq] if cell.seq < len(ids) else str(cell.seq),
                        "value": cell.value,
                        "cell": [cell.row, cell.col],
                        "box": [round(v, 3) for v in box],
                        "crop": name if name in written else None,
                    }
                )
            channels.append(peaks)
        levels.append({"layer": key[0], "level": key[1], "top_images": top.n, "channels": channels})
    return {"levels": levels}


def _figure(key: tuple[str, str], channel: int, rank: int, cell: TopCell, ids: Sequence[str], written: set[str]) -> str:
    image = ids[cell.seq] if cell.seq < len(ids) else str(cell.seq)
    caption = f"{cell.value:.4g} · {image} · cell ({cell.row}, {cell.col})"
    name = _crop_name(key, channel, rank)
    if name not in written:
        return f"<figure><figcaption>{html.escape(caption)} (no crop)</figcaption></figure>"
    link = href(name)
    return (
        f"<figure><img src='{link}' alt='{html.escape(caption)}' loading='lazy'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _page(
    run: str,
    tops: Mapping[tuple[str, str], TopCells],
    ids: Sequence[str],
    dead: Mapping[tuple[str, str], Sequence[int]],
    written: set[str],
) -> str:
    title = f"featvis-run channel atlas: {run}"
    body = [
        f"<h1>{html.escape(title)}</h1><p>Per channel, the images where it fires most (its maximum over the image's "
        "valid cells), best first: the crop shows the region of the image the peak cell covers (outlined) with a cell "
        "of context each side; the caption gives the value, the image and the cell (row, column) among the valid "
        "cells.</p>"
    ]
    toc = "".join(f"<li><a href='#{_anchor(k)}'>{html.escape(f'{k[0]} / {k[1]}')}</a></li>" for k in tops)
    body.append(f"<ul>{toc}</ul>")
    for key, top in tops.items():
        dead_set = set(dead.get(key, ()))
        rows = []
        for c in range(top.channels):
            label = f"{c}" + (" <span class='dead'>dead</span>" if c in dead_set else "")
            figures = "".join(_figure(key, c, rank, cell, ids, written) for rank, cell in enumerate(top.ranked(c)))
            rows.append(f"<tr><th>{label}</th><td>{figures or '<span class=none>no finite value</span>'}</td></tr>")
        heading = html.escape(f"{key[0]} / {key[1]}: {top.channels} channels, top {top.n} images each")
        body.append(f"<h2 id='{_anchor(key)}'>{heading}</h2><table>{''.join(rows)}</table>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _anchor(key: tuple[str, str]) -> str:
    return html.escape(f"{safe_name(key[0])}-{safe_name(key[1])}")
