"""Sweep summaries: after a multirun, one table of every job built from the job folders on disk.

Works with any launcher (in-process, joblib, submitit), since it reads each job's ``.hydra/overrides.yaml`` and its
``manifest.json`` (or ``error.json``) rather than in-process state. Writes ``summary.json``, ``summary.csv`` and an
``index.html`` page (the report page of :mod:`featvis_run.report.page`: pick jobs and compare them side by side on
one image and level) into the sweep folder and prints the table. Jobs whose pictures are byte-identical to an earlier
job's (e.g. topk with a reducer that ignores it) are marked duplicates, and the page says which jobs share a colour
scale.
A sweep with a job that did not end ``ok`` exits with status 1 once the summary is written.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from featvis_run.report.page import write_sweep_page
from featvis_run.store.outputs import write_bytes, write_json

__all__ = ["JobRow", "SweepSummaryCallback", "build_summary", "mark_duplicates", "scale_sharing", "write_summary"]


@dataclass(frozen=True)
class JobRow:
    """One job of a sweep, as read from its folder."""

    job: str
    overrides: dict[str, str]
    status: str
    outputs: int = 0
    images: int = 0
    failures: int = 0
    cache_hit: bool = False
    forward_passes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    error: str | None = None
    captions: tuple[str, ...] = ()  # "layer / level" (with the image when a job drew several) of each file
    digest: str | None = None  # sha256 over the job's pictures (names within the job and bytes)
    duplicate_of: str | None = None  # an earlier job whose pictures are byte-identical
    scale: dict[str, Any] | None = None  # the manifest's colour scale block (mode, fixed range, run ranges)
    metrics: dict[str, Any] | None = None  # the manifest's explanation metrics means (analysis.metrics)


def _overrides(job_dir: Path) -> dict[str, str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return {}
    from omegaconf import OmegaConf

    out = {}
    for item in OmegaConf.to_container(OmegaConf.load(path)) or []:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def _read_job(job_dir: Path, sweep_dir: Path) -> JobRow:
    overrides = _overrides(job_dir)
    name = job_dir.relative_to(sweep_dir).as_posix()
    manifests = sorted(job_dir.glob("manifest*.json"), key=lambda p: p.stat().st_mtime_ns)
    if manifests:  # the newest, if the folder was reused
        m = json.loads(manifests[-1].read_text())
        files = [f"{name}/{o['file']}" for o in m["outputs"]]
        several = len({o["image"] for o in m["outputs"]}) > 1
        captions = [f"{o['image'] + ': ' if several else ''}{o['layer']} / {o['level']}" for o in m["outputs"]]
        reasons = "; ".join(f"{f['item']}: {f['reason']}" for f in m["failures"]) or None
        return JobRow(
            job=name,
            overrides=overrides,
            status=m["status"],
            outputs=len(m["outputs"]),
            images=len(m["images"]),
            failures=len(m["failures"]),
            cache_hit=bool(m.get("cache_hit", False)),
            forward_passes=int(m.get("forward_passes", 0)),
            timings=m.get("timings", {}),
            files=tuple(files),
            error=reasons,
            captions=tuple(captions),
            digest=_digest(job_dir, [o["file"] for o in m["outputs"]]),
            scale=m.get("scale"),
            metrics=m.get("metrics"),
        )
    error = job_dir / "error.json"
    if error.exists():
        return JobRow(job=name, overrides=overrides, status="error", error=json.loads(error.read_text())["error"])
    return JobRow(job=name, overrides=overrides, status="missing", error="no manifest.json or error.json")


def _digest(job_dir: Path, files: Sequence[str]) -> str | None:
    """sha256 over a job's pictures: each file's name within the job and its bytes; None if one is missing."""
    h = hashlib.sha256()
    for rel in sorted(files):
        path = job_dir / rel
        if not path.is_file():
            return None
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest() if files else None


def mark_duplicates(rows: Sequence[JobRow]) -> list[JobRow]:
    """The rows with ``duplicate_of`` set on every job whose pictures equal an earlier job's, byte for byte."""
    first: dict[str, str] = {}
    out = []
    for r in rows:
        same = first.get(r.digest) if r.digest else None
        if r.digest and same is None:
            first[r.digest] = r.job
        out.append(replace(r, duplicate_of=same))
    return out


def build_summary(sweep_dir: Path) -> list[JobRow]:
    """A row per job folder (any folder below ``sweep_dir`` holding ``.hydra/``), sorted by job number, duplicates
    marked (see :func:`mark_duplicates`)."""

    def order(p: Path) -> tuple[int, str]:
        head = p.relative_to(sweep_dir).as_posix().split("_", 1)[0]
        return (int(head) if head.isdigit() else 1 << 30, p.as_posix())

    jobs = sorted((h.parent for h in sweep_dir.rglob(".hydra") if h.is_dir() and h.parent != sweep_dir), key=order)
    return mark_duplicates([_read_job(p, sweep_dir) for p in jobs])


def _swept_keys(rows: Sequence[JobRow]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        for k in row.overrides:
            if k not in keys:
                keys.append(k)
    return [k for k in keys if len({r.overrides.get(k) for r in rows}) > 1]


def _csv(rows: Sequence[JobRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [
            "job",
            "overrides",
            "status",
            "outputs",
            "images",
            "failures",
            "cache_hit",
            "forward_passes",
            "seconds",
            "duplicate_of",
            "error",
            *METRIC_COLUMNS,
        ]
    )
    for r in rows:
        overrides = " ".join(f"{k}={v}" for k, v in r.overrides.items())
        seconds = round(sum(r.timings.values()), 3)
        writer.writerow(
            [r.job, overrides, r.status, r.outputs, r.images, r.failures, r.cache_hit, r.forward_passes, seconds]
            + [r.duplicate_of or "", r.error or ""]
            + [_metric(r, col) for col in METRIC_COLUMNS]
        )
    return buf.getvalue()


#: explanation metrics shown per job (means over its images; ``random_*``: the random baseline's)
METRIC_COLUMNS = (
    "pointing_game",
    "energy_in_boxes",
    "deletion_auc",
    "insertion_auc",
    "random_deletion_auc",
    "random_insertion_auc",
)


def _metric(row: JobRow, column: str) -> str:
    """A job's mean of one metric as text (4 decimals), empty when it has none."""
    block = row.metrics or {}
    if column.startswith("random_"):
        block, column = block.get("random") or {}, column.removeprefix("random_")
    value = block.get(column)
    return "" if value is None else f"{value:.4f}"


def _scale_key(row: JobRow) -> str | None:
    """What makes two jobs' colours comparable: a fixed range, or equal run-wide ranges; None when per map/image."""
    s = row.scale or {}
    mode = s.get("mode", "per_map")
    if mode == "fixed":
        return f"fixed {s.get('range')}"
    if mode in ("per_run", "per_level") and s.get("ranges"):
        return f"{mode} {json.dumps(s['ranges'], sort_keys=True)}"
    return None


def scale_sharing(rows: Sequence[JobRow]) -> str:
    """One sentence for the gallery: which jobs share a colour scale (so compare by colour), or that none do."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        key = _scale_key(r)
        if key is not None:
            groups.setdefault(key, []).append(r.job)
    shared = [jobs for jobs in groups.values() if len(jobs) > 1]
    if len(groups) == 1 and shared and len(shared[0]) == len(rows):
        return f"All jobs share one colour scale ({next(iter(groups)).split(' ', 1)[0]}): colours compare across jobs."
    if shared:
        return (
            "Jobs that share a colour scale (colours compare between them): "
            + "; ".join(", ".join(jobs) for jobs in shared)
            + ". Other jobs have their own scales."
        )
    modes = sorted({(r.scale or {}).get("mode", "per_map") for r in rows})
    return (
        f"No two jobs share a colour scale (output.scale={', '.join(modes)}): compare colours within a job only; "
        "use output.scale=fixed output.scale_range=[lo,hi] to compare across jobs."
    )


def write_summary(sweep_dir: Path, print_table: bool = True) -> list[JobRow]:
    """Build the summary of ``sweep_dir`` and write ``summary.json``, ``summary.csv`` and ``index.html``."""
    rows = build_summary(sweep_dir)
    from featvis_run.analysis.sweep_merge import merge_sweep_channels  # analysis.channels: shards merged

    channels = merge_sweep_channels(sweep_dir, [(r.job, r.overrides) for r in rows])
    payload = {
        "sweep_dir": str(sweep_dir),
        "summary_pid": os.getpid(),
        "jobs": len(rows),
        "failed": sum(r.status != "ok" for r in rows),
        "forward_passes": sum(r.forward_passes for r in rows),
        "swept": _swept_keys(rows),
        "duplicates": {r.job: r.duplicate_of for r in rows if r.duplicate_of},
        "scale_sharing": scale_sharing(rows),
        "rows": [asdict(r) for r in rows],
        **({"channels": channels.files} if channels.files else {}),
        **({"channel_notes": channels.notes} if channels.notes else {}),
    }
    write_json(sweep_dir / "summary.json", payload, overwrite=True)
    write_bytes(sweep_dir / "summary.csv", _csv(rows).encode(), overwrite=True)
    write_sweep_page(sweep_dir, rows, payload["swept"], payload["scale_sharing"])
    if print_table:
        _print(rows, sweep_dir)
        _print_channels(channels.files, channels.notes)
    return rows


def _print_channels(files: dict[str, list[str]], notes: list[str]) -> None:
    """The merged channel statistics of a sharded sweep (analysis.channels=true), and groups not merged."""
    from rich.markup import escape

    from featvis_run.report.summary import make_console

    console = make_console()
    for rel, jobs in files.items():
        console.print(f"[bold]channels[/] {escape(rel)}: merged over {len(jobs)} shard(s)", highlight=False)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def _print(rows: Sequence[JobRow], sweep_dir: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    from featvis_run.report.summary import make_console

    table = Table(title=f"sweep: {len(rows)} jobs, {sum(r.forward_passes for r in rows)} forward passes")
    with_metrics = any(r.metrics for r in rows)
    metric_cols = METRIC_COLUMNS if with_metrics else ()
    short = {
        "pointing_game": "pointing",
        "energy_in_boxes": "energy",
        "deletion_auc": "deletion",
        "insertion_auc": "insertion",
        "random_deletion_auc": "random del.",
        "random_insertion_auc": "random ins.",
    }
    for col in ("job", "status", "outputs", "cache hit", "forward passes", "seconds", *metric_cols):
        table.add_column(short.get(col, col), overflow="fold")
    for col in ("duplicate of", "error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        seconds = f"{sum(r.timings.values()):.2f}"
        row = (r.job, r.status, str(r.outputs), str(r.cache_hit), str(r.forward_passes), seconds)
        row += tuple(_metric(r, c) for c in metric_cols)
        table.add_row(*(escape(cell) for cell in (*row, r.duplicate_of or "", r.error or "")))
    console = make_console()
    console.print(table)
    dups = [r for r in rows if r.duplicate_of]
    if dups:
        console.print(
            f"[yellow]note:[/] {len(dups)} job(s) drew pictures byte-identical to an earlier job's (a swept option "
            "that changes nothing, e.g. topk with a reducer that ignores it): "
            + escape(", ".join(f"{r.job} = {r.duplicate_of}" for r in dups)),
            highlight=False,
        )
    console.print(escape(scale_sharing(rows)), highlight=False)
    console.print(f"[bold]sweep[/] {escape(str(sweep_dir))}  (summary.json, summary.csv, index.html)")


class SweepSummaryCallback(Callback):
    """Hydra callback (registered in ``conf/config.yaml``): writes the sweep summary when a multirun ends, then
    ends the process with status 1 if a job failed (Hydra's callbacks swallow exceptions, not ``SystemExit``)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        rows = write_summary(Path(config.hydra.sweep.dir))
        if any(r.status != "ok" for r in rows):
            sys.exit(1)
