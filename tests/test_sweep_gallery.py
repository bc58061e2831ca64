"""The sweep summary as a user reads it, from job folders written here by hand (no run): the gallery shows an
error's text as text (never as markup), and jobs are duplicates only when their pictures are the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

from featvis_run.report.sweep import write_summary

from .report_page import page_data


def _job(sweep: Path, name: str, overrides: list[str], pictures: dict[str, bytes] | None = None, error: str = ""):
    """A job folder as a finished job leaves it: ``.hydra/overrides.yaml`` and a manifest (or ``error.json``)."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if pictures is None:
        (job / "error.json").write_text(json.dumps({"error": error}))
        return
    outputs = []
    for rel, data in pictures.items():
        (job / rel).parent.mkdir(parents=True, exist_ok=True)
        (job / rel).write_bytes(data)
        image, layer, level = rel.removesuffix(".png").split("/")
        outputs.append({"file": rel, "image": image, "layer": layer, "level": level})
    manifest = {"status": "ok", "outputs": outputs, "images": [{}], "failures": [], "forward_passes": 1}
    (job / "manifest.json").write_text(json.dumps(manifest))


def test_an_error_message_is_shown_as_text_in_the_gallery_not_as_markup(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, "0", ["reducer=select_max"], {"a/neck/p3.png": b"png-a"})
    error = "images='<img src=x onerror=alert(1)>' & <script>alert(2)</script> not found"
    _job(sweep, "1", ["reducer=squeeze_mean"], error=error)
    write_summary(sweep, print_table=False)
    raw = (sweep / "index.html").read_text()
    assert "<img src=x" not in raw and "<script>alert" not in raw  # the message never becomes markup
    assert raw.count("<script") == 2  # the page's data and its code, nothing the job wrote
    jobs = {j["job"]: j for j in page_data(sweep / "index.html")["jobs"]}
    assert jobs["1"]["error"] == error and jobs["1"]["status"] != "ok"  # the page shows it exactly, as text


def test_jobs_are_duplicates_only_when_their_pictures_have_the_same_bytes(tmp_path):
    sweep = tmp_path / "sweep"
    same = {"a/neck/p3.png": b"\x89PNG one", "a/neck/p4.png": b"\x89PNG two"}
    _job(sweep, "0", ["reducer=none", "topk=4"], same)
    _job(sweep, "1", ["reducer=none", "topk=8"], {"a/neck/p3.png": b"\x89PNG other", "a/neck/p4.png": b"\x89PNG two"})
    _job(sweep, "2", ["reducer=squeeze_mean", "topk=4"], dict(same))  # e.g. a reducer that ignores topk
    rows = write_summary(sweep, print_table=False)
    assert [r.duplicate_of for r in rows] == [None, None, "0"]  # same names in all three; bytes equal only in 0, 2
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["duplicates"] == {"2": "0"}
    marks = {j["job"]: j["duplicate_of"] for j in page_data(sweep / "index.html")["jobs"]}
    assert marks == {"0": None, "1": None, "2": "0"}  # the page marks job 2 as job 0's duplicate
