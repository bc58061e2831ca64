"""What featvis-run prints and links is what is on disk: rich markup in values printed literally, gallery links to
folders with URL-special names that lead to those folders."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from featvis_run.report.summary import print_job_line, print_layers, print_summary
from featvis_run.report.sweep import write_summary
from featvis_run.store.manifest import Failure, ImageRecord, MapRecord, ModelRecord, RunResult

from .report_page import page_data


def _console() -> Console:
    return Console(width=400, color_system=None, force_terminal=False)


def _printed(fn, *args) -> list[str]:
    console = _console()
    with console.capture() as cap:
        fn(*args, console=console)
    return [line.rstrip() for line in cap.get().splitlines()]


def _result(out_dir: Path) -> RunResult:
    model = ModelRecord("m[/b]", "mmdet", "cfg[red]x.py", "w[/]x.pth", "0123456789abcdef", None, "cpu", 3)
    output = MapRecord(
        "a[/b]", "neck[i]", "p3", (4, 2, 2), (2, 2), "none", (), {"min": 0.0, "max": 1.0, "mean": 0.5}, "a[/b]/p3.png"
    )
    return RunResult(
        "single",
        out_dir,
        {},
        (model,),
        (ImageRecord("a[/b].png", (8, 8), (8, 8), 0),),
        (output,),
        failures=(Failure("img[/b].png", "boom [/i] here"),),
        notes=("use output.scale_range=[lo,hi] with two numbers", "[bold]not bold[/bold]"),
        timings={"render": 1.0},
    )


def test_markup_in_paths_names_notes_and_failures_prints_literally(tmp_path):
    out = tmp_path / "q[/b]z"
    lines = _printed(print_summary, _result(out))
    assert lines[0] == "model m[/b]  cfg[red]x.py  weights: w[/]x.pth (sha256 0123456789ab…)  device: cpu"
    assert "│ a[/b] │ neck[i] │ p3    │ 4x2x2     │ none    │ all      │ a[/b]/p3.png │" in lines
    assert lines[-5:] == [
        "note: use output.scale_range=[lo,hi] with two numbers",
        "note: [bold]not bold[/bold]",
        "failed: img[/b].png: boom [/i] here",
        "timings render 1.00s",
        f"output {out}  (manifest.json)",
    ]


def test_a_sweep_job_line_and_layer_listing_print_markup_literally(tmp_path):
    result = RunResult("single", tmp_path / "3_x=[b]z", {}, (), (), (), notes=("RANDOM INIT weights [lo,hi]",))
    assert _printed(print_job_line, result) == [
        "job 3_x=[b]z: ok, 0 maps, 0 forward pass(es), 0.00 s",
        "  note: RANDOM INIT weights [lo,hi]",
    ]

    class Layer:
        name, type, shapes, grids, calls, params = "neck[/b]", "FPN[x]", [(1, 2, 3, 4)], [], 1, 10

    lines = _printed(print_layers, [Layer()], tmp_path / "o[/b]", ["see [lo,hi]"])
    assert any("neck[/b]" in line and "FPN[x]" in line for line in lines), lines
    assert lines[-2:] == ["note: see [lo,hi]", f"output {tmp_path / 'o[/b]'}/layers.json"]


def _job(sweep: Path, name: str, error: str | None = None) -> None:
    number = name.split("_", 1)[0]
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- topk={number}\n")
    if error:
        (job / "error.json").write_text(json.dumps({"error": error}))
        return
    (job / "img").mkdir()
    (job / "img" / "p3.png").write_bytes(name.encode())
    manifest = {
        "status": "ok",
        "outputs": [{"file": "img/p3.png", "image": "img", "layer": "neck", "level": "p3"}],
        "images": [{}],
        "failures": [],
    }
    (job / "manifest.json").write_text(json.dumps(manifest))


NAMES = ["0_a#1", "1_b?x=2", "2_c%41", "3_d e", "4_ü,ß", "5_f'g&h", "6_k:l"]


def test_sweep_page_links_lead_to_job_folders_with_url_special_names(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for name in NAMES:
        _job(sweep, name)
    _job(sweep, "7_[/b]bad", error="boom [/i] [lo,hi]")
    write_summary(sweep)
    data = page_data(sweep / "index.html")
    # each picture and job page, relative to the sweep folder, is that job's (the page URL-encodes each segment)
    assert sorted(m["picture"] for m in data["maps"]) == sorted(f"{name}/img/p3.png" for name in NAMES)
    assert all((sweep / m["picture"]).read_bytes() == m["job"].encode() for m in data["maps"])
    assert [j["href"] for j in data["jobs"]] == [f"{name}/index.html" for name in [*NAMES, "7_[/b]bad"]]
    printed = capsys.readouterr().out
    assert "7_[/b]bad" in printed and "boom [/i] [lo,hi]" in printed


def test_links_the_atlas_page_writes_are_url_encoded_per_segment_then_html_escaped():
    from featvis_run.report.links import href

    # expected by hand: RFC 3986 percent-encoding of '#', '?', '%', ' ', ':' and UTF-8 'ü'; '/' separates segments,
    # '&' and "'" stay (sub-delimiters) and are then HTML-escaped
    assert href("a#1/b?/100%/ü x/c:0.jpg") == "a%231/b%3F/100%25/%C3%BC%20x/c%3A0.jpg"
    assert href("it's&more/p3.jpg") == "it&#x27;s&amp;more/p3.jpg"
