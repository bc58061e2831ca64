"""Sweep summaries: after a multirun, one table of every job built from the job folders on disk.

Works with any launcher (in-process, joblib, submitit), since it reads each job's ``.hydra/overrides.yaml`` and its
``manifest.json`` (or ``error.json``) rather than in-process state. Writes ``summary.json``, ``summary.csv`` and an
``index.html`` gallery (rows: one swept key, columns: the others) into the sweep folder and prints the table.
A sweep with a job that did not end ``ok`` exits with status 1 once the summary is written.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from featvis_run.store.outputs import write_bytes, write_json

__all__ = ["JobRow", "SweepSummaryCallback", "build_summary", "write_summary"]


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
        )
    error = job_dir / "error.json"
    if error.exists():
        return JobRow(job=name, overrides=overrides, status="error", error=json.loads(error.read_text())["error"])
    return JobRow(job=name, overrides=overrides, status="missing", error="no manifest.json or error.json")


def build_summary(sweep_dir: Path) -> list[JobRow]:
    """A row per job folder (any folder below ``sweep_dir`` holding ``.hydra/``), sorted by job number."""

    def order(p: Path) -> tuple[int, str]:
        head = p.relative_to(sweep_dir).as_posix().split("_", 1)[0]
        return (int(head) if head.isdigit() else 1 << 30, p.as_posix())

    jobs = sorted((h.parent for h in sweep_dir.rglob(".hydra") if h.is_dir() and h.parent != sweep_dir), key=order)
    return [_read_job(p, sweep_dir) for p in jobs]


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
            "error",
        ]
    )
    for r in rows:
        overrides = " ".join(f"{k}={v}" for k, v in r.overrides.items())
        seconds = round(sum(r.timings.values()), 3)
        writer.writerow(
            [r.job, overrides, r.status, r.outputs, r.images, r.failures, r.cache_hit, r.forward_passes, seconds]
            + [r.error or ""]
        )
    return buf.getvalue()


def _cell(row: JobRow | None) -> str:
    if row is None:
        return "<td class='empty'>-</td>"
    head = f"<div class='job'>{html.escape(row.job)} <span class='{row.status}'>{row.status}</span></div>"
    if row.error:
        head += f"<div class='err'>{html.escape(row.error)}</div>"
    imgs = "".join(
        f"<a href='{html.escape(f)}'><img src='{html.escape(f)}' title='{html.escape(f)}' loading='lazy'></a>"
        for f in row.files
    )
    return f"<td>{head}{imgs}</td>"


def _gallery(rows: Sequence[JobRow], title: str) -> str:
    keys = _swept_keys(rows)
    row_key, col_keys = (keys[0], keys[1:]) if keys else (None, [])

    def col_label(r: JobRow) -> str:
        return ", ".join(f"{k}={r.overrides.get(k, '')}" for k in col_keys) or "job"

    row_values = list(dict.fromkeys(r.overrides.get(row_key, "") for r in rows)) if row_key else [""]
    col_values = list(dict.fromkeys(col_label(r) for r in rows))
    grid = {(r.overrides.get(row_key, "") if row_key else "", col_label(r)): r for r in rows}
    header = "".join(f"<th>{html.escape(c)}</th>" for c in col_values)
    body = ""
    for rv in row_values:
        label = f"{row_key}={rv}" if row_key else ""
        cells = "".join(_cell(grid.get((rv, cv))) for cv in col_values)
        body += f"<tr><th>{html.escape(label)}</th>{cells}</tr>\n"
    style = (
        "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:4px;vertical-align:top}img{height:120px;margin:2px}.ok{color:green}.failed,.error,.missing"
        "{color:#b00}.err{color:#b00;font-size:small;max-width:40em}.job{font-size:small}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<table><tr><th></th>{header}</tr>\n{body}</table></body></html>\n"
    )


def write_summary(sweep_dir: Path, print_table: bool = True) -> list[JobRow]:
    """Build the summary of ``sweep_dir`` and write ``summary.json``, ``summary.csv`` and ``index.html``."""
    rows = build_summary(sweep_dir)
    payload = {
        "sweep_dir": str(sweep_dir),
        "summary_pid": os.getpid(),
        "jobs": len(rows),
        "failed": sum(r.status != "ok" for r in rows),
        "forward_passes": sum(r.forward_passes for r in rows),
        "swept": _swept_keys(rows),
        "rows": [asdict(r) for r in rows],
    }
    write_json(sweep_dir / "summary.json", payload, overwrite=True)
    write_bytes(sweep_dir / "summary.csv", _csv(rows).encode(), overwrite=True)
    write_bytes(
        sweep_dir / "index.html", _gallery(rows, f"featvis-run sweep {sweep_dir.name}").encode(), overwrite=True
    )
    if print_table:
        _print(rows, sweep_dir)
    return rows


def _print(rows: Sequence[JobRow], sweep_dir: Path) -> None:
    from rich.table import Table

    from featvis_run.report.summary import make_console

    table = Table(title=f"sweep: {len(rows)} jobs, {sum(r.forward_passes for r in rows)} forward passes")
    for col in ("job", "status", "outputs", "cache hit", "forward passes", "seconds", "error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        seconds = f"{sum(r.timings.values()):.2f}"
        row = (r.job, r.status, str(r.outputs), str(r.cache_hit), str(r.forward_passes), seconds, r.error or "")
        table.add_row(*row)
    console = make_console()
    console.print(table)
    console.print(f"[bold]sweep[/] {sweep_dir}  (summary.json, summary.csv, index.html)")


class SweepSummaryCallback(Callback):
    """Hydra callback (registered in ``conf/config.yaml``): writes the sweep summary when a multirun ends, then
    ends the process with status 1 if a job failed (Hydra's callbacks swallow exceptions, not ``SystemExit``)."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        rows = write_summary(Path(config.hydra.sweep.dir))
        if any(r.status != "ok" for r in rows):
            sys.exit(1)
