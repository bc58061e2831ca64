"""The interactive report page of a run (``index.html``) and of a sweep (its jobs compared side by side).

One self-contained HTML file that works from ``file://``: the maps' values inlined, drawn in the browser on a canvas
above the photo; hover values, colormaps, colour scales, channels, diffs, checkpoints and sweep jobs compared. See
docs/how-to/report.md.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from featvis_run.report.page.data import model_labels, run_data
from featvis_run.report.page.photos import store_photos
from featvis_run.report.page.writer import colormap_tables, write_pages
from featvis_run.store.manifest import RunResult
from featvis_run.store.outputs import write_bytes

__all__ = ["model_labels", "run_page_data", "sweep_page_data", "write_run_page", "write_sweep_page"]


def run_page_data(out_dir: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a run's page shows, from its manifest and the arrays it saved."""
    data = run_data(out_dir, manifest)
    data |= {
        "kind": "run",
        "title": f"featvis-run {manifest.get('experiment')}: {out_dir.name}",
        "cmaps": colormap_tables(data["colormap"]),
    }
    return data


def write_run_page(
    result: RunResult, sources: Mapping[str, str] | None = None, max_pixels: int | None = None
) -> RunResult:
    """Store a photo per image that has none (read from ``sources``, the run's inputs by image id), write
    ``index.html`` (and ``pages/`` for a large run) and save the manifest with them; returns the updated result."""
    images = store_photos(result.out_dir, result.images, sources or {}, max_pixels)
    result = dataclasses.replace(result, images=tuple(images))
    data = run_page_data(result.out_dir, result.manifest())
    written = write_pages(result.out_dir, data, data["title"])
    pages = [w for w in written if w != "index.html"]
    extra = {k: v for k, v in result.extra.items() if k != "pages"} | ({"pages": pages} if pages else {})
    result = dataclasses.replace(result, extra=extra)
    result.save()
    return result


def _job_manifest(job_dir: Path) -> dict[str, Any] | None:
    manifests = sorted(job_dir.glob("manifest*.json"), key=lambda p: p.stat().st_mtime_ns)
    if not manifests:
        return None
    try:
        data = json.loads(manifests[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def sweep_page_data(sweep_dir: Path, rows: Sequence[Any], swept: Sequence[str], sharing: str) -> dict[str, Any]:
    """The sweep page's data: every job (its overrides, status, duplicate mark) with its images and maps (without
    recorded features), each link relative to the sweep folder."""
    jobs, images, maps = [], [], []
    colormap = "jet"
    for row in rows:
        label = ", ".join(f"{k}={row.overrides.get(k, '')}" for k in swept) or row.job
        jobs.append(
            {
                "job": row.job,
                "label": label,
                "overrides": row.overrides,
                "status": row.status,
                "duplicate_of": row.duplicate_of,
                "error": row.error,
                "outputs": row.outputs,
                "seconds": round(sum(row.timings.values()), 3),
                "href": f"{row.job}/index.html",
            }
        )
        manifest = _job_manifest(sweep_dir / row.job) if row.status in ("ok", "failed") else None
        if manifest is None:
            continue
        data = run_data(sweep_dir / row.job, manifest, prefix=f"{row.job}/")
        colormap = data["colormap"]
        images += [dict(i, job=row.job) for i in data["images"]]
        maps += [{k: v for k, v in dict(m, job=row.job).items() if k != "features"} for m in data["maps"]]
    return {
        "kind": "sweep",
        "title": f"featvis-run sweep {sweep_dir.name}",
        "jobs": jobs,
        "images": images,
        "maps": maps,
        "swept": list(swept),
        "scale_sharing": sharing,
        "colormap": colormap,
        "cmaps": colormap_tables(colormap),
        "notes": [],
        "failures": [],
        "links": [{"label": "summary.csv", "href": "summary.csv"}, {"label": "summary.json", "href": "summary.json"}],
    }


def write_sweep_page(sweep_dir: Path, rows: Sequence[Any], swept: Sequence[str], sharing: str) -> Path:
    """Write the sweep's ``index.html``: pick two or more jobs and compare them on the same image and level."""
    from featvis_run.report.page.writer import page_html

    data = sweep_page_data(sweep_dir, rows, swept, sharing)
    return write_bytes(sweep_dir / "index.html", page_html(data, data["title"]).encode("utf-8"))
