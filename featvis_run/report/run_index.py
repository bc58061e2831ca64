"""``index.html`` of one run (single, multi_image, diff): every picture with its image, layer, level and colour
range written under it, contact sheets and diff panels, notes and failures. Links are relative: the folder can be
moved or served as it is."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featvis_run.report.links import href as url_path
from featvis_run.store.manifest import MapRecord, RunResult
from featvis_run.store.outputs import write_bytes

__all__ = ["INDEX_STYLE", "scale_text", "write_run_index"]

INDEX_STYLE = (
    "body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;vertical-align:top}"
    "figure img{height:180px;display:block}figcaption{font-size:small;max-width:24em}"
    ".note{color:#a60}.fail{color:#b00}.loud{color:#b00;font-weight:bold}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px;vertical-align:top}.scale{color:#555}"
)


def scale_text(scale: Sequence[float] | None, tile_scales: Sequence[Any] = ()) -> str:
    """A colour range for a caption: ``[lo, hi]``, ``each tile min-max`` for grids scaled per tile, or ``-``."""
    if scale is not None:
        return f"[{scale[0]:.4g}, {scale[1]:.4g}]"
    return "each tile min-max" if tile_scales else "-"


def _figure(href: str, caption: str, sub: str = "") -> str:
    link = url_path(href)
    extra = f"<br><span class='scale'>{html.escape(sub)}</span>" if sub else ""
    return (
        f"<figure><a href='{link}'><img src='{link}' loading='lazy' alt='{html.escape(caption)}'></a>"
        f"<figcaption>{html.escape(caption)}{extra}</figcaption></figure>"
    )


def _maps_section(outputs: Sequence[MapRecord]) -> str:
    by_image: dict[str, list[MapRecord]] = {}
    for o in outputs:
        by_image.setdefault(o.image, []).append(o)
    parts = []
    for image, records in by_image.items():
        figures = "".join(
            _figure(o.file, _caption(o), f"{o.reducer}, colours {scale_text(o.scale, o.tile_scales)}")
            for o in records
            if not o.file.endswith(".npy")  # output.pictures=maps: arrays, drawn by the report page
        )
        parts.append(f"<h2>{html.escape(image)}</h2><div>{figures}</div>")
    return "".join(parts)


def _caption(o: MapRecord) -> str:
    """A picture's caption: its level, and a checkpoint frame's checkpoint first."""
    checkpoint = getattr(o, "checkpoint", "")
    return f"{checkpoint}: {o.layer} / {o.level}" if checkpoint else f"{o.layer} / {o.level}"


def _sequences_section(levels: Sequence[dict[str, Any]]) -> str:
    """experiment=checkpoints: each level's GIF, strip and change plot."""
    parts = []
    for lv in levels:
        where = f"{lv.get('image')} / {lv.get('layer')} / {lv.get('level')}"
        names = (("gif", "animation over checkpoints"), ("strip", "side by side"), ("change_plot", "change"))
        figures = "".join(_figure(lv[k], f"{where}: {what}") for k, what in names if lv.get(k))
        parts.append(f"<div>{figures}</div>" if figures else "")
    return "<h2>checkpoints: animation, strip, change</h2>" + "".join(parts) if any(parts) else ""


def _diff_section(comparisons: Sequence[dict[str, Any]]) -> str:
    rows = []
    for c in comparisons:
        nums = ", ".join(
            f"{k} {c[k]:.4f}" if isinstance(c.get(k), float) else f"{k} -" for k in ("mean_abs_diff", "cosine", "cka")
        )
        sub = f"A, B colours {scale_text(c.get('panel_scale'))}; diff {scale_text(c.get('scale'))}; {nums}"
        sides = f"A {c.get('label_a', 'A')} | B {c.get('label_b', 'B')} | diff"
        if c.get("panel_file"):
            rows.append(_figure(c["panel_file"], f"{c['image']} / {c['level']}: {sides}", sub))
    return "<h2>A | B | diff panels</h2><div>" + "".join(rows) + "</div>"


def _page(result: RunResult) -> str:
    title = f"featvis-run {result.experiment}: {result.out_dir.name}"
    models = "".join(
        f"<li>{html.escape(m.name)}: {html.escape(m.mmdet_config)}, weights "
        f"<span class='{'loud' if m.sha256 is None else ''}'>{html.escape(m.weights)}</span></li>"
        for m in result.models
    )
    scale = result.extra.get("scale") or {}
    scale_line = f"colour scale: {html.escape(str(scale.get('mode', 'per_map')))}"
    if scale.get("clip_percentile") is not None:
        scale_line += f", clipped to the {100 - scale['clip_percentile']:g}..{scale['clip_percentile']:g} percentiles"
    body = [f"<h1>{html.escape(title)}</h1><ul>{models}</ul><p>{scale_line}</p>"]
    body += [f"<p class='note'>note: {html.escape(n)}</p>" for n in result.notes]
    body += [f"<p class='fail'>failed: {html.escape(f.item)}: {html.escape(f.reason)}</p>" for f in result.failures]
    if "comparisons" in result.extra:
        body.append(_diff_section(result.extra["comparisons"]))
        body.append("<h2>diff maps</h2>" + _maps_section(result.outputs))
    else:
        sheets = result.extra.get("contact_sheets", [])
        if sheets:
            figures = "".join(_figure(s["file"], f"{s['layer']} / {s['level']}: every image") for s in sheets)
            body.append(f"<h2>contact sheets</h2><div>{figures}</div>")
        body.append(_sequences_section(result.extra.get("levels", [])))
        body.append(_maps_section(result.outputs))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{INDEX_STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_run_index(result: RunResult) -> Path:
    """Write ``index.html`` into the run folder (atomically) and return its path."""
    return write_bytes(Path(result.out_dir) / "index.html", _page(result).encode("utf-8"))
