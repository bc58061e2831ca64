"""The sweep summary as a user reads it, from job folders written here by hand (no run): the gallery shows an
error's text as text (never as markup), and jobs are duplicates only when their pictures are the same bytes."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from featvis_run.report.sweep import write_summary


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


class _Page(HTMLParser):
    """The elements and the visible text of a page."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text += data


def _page(sweep: Path) -> _Page:
    page = _Page()
    page.feed((sweep / "index.html").read_text())
    return page


def test_an_error_message_is_shown_as_text_in_the_gallery_not_as_markup(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, "0", ["reducer=select_max"], {"a/neck/p3.png": b"png-a"})
    error = "images='<img src=x onerror=alert(1)>' & <script>alert(2)</script> not found"
    _job(sweep, "1", ["reducer=squeeze_mean"], error=error)
    write_summary(sweep, print_table=False)
    page = _page(sweep)
    assert "script" not in page.tags and page.tags.count("img") == 1  # only job 0's picture is an element
    assert error in page.text  # the user reads the message exactly as the job wrote it


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
    assert "1 duplicate job(s), pictures byte-identical: 2 = 0" in _page(sweep).text
