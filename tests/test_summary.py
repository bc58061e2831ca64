"""The rich summary aggregates levels over images."""

from pathlib import Path

from featvis_run.report.summary import _levels_table, make_console
from featvis_run.store.manifest import ImageRecord, MapRecord, RunResult


def _record(image: str, shape: tuple[int, int, int], valid_hw: tuple[int, int]) -> MapRecord:
    return MapRecord(
        image=image,
        layer="neck",
        level="p3",
        shape=shape,
        valid_hw=valid_hw,
        reducer="squeeze_mean",
        channels=(),
        stats={"min": 0.0, "max": 1.0, "mean": 0.5},
        file=f"{image}/neck/p3.png",
    )


def test_levels_table_shows_the_range_of_valid_grids_per_axis():
    # a landscape and a portrait image padded to the same 80x80 batch grid: heights 60-80, widths 60-80
    outputs = (_record("wide", (64, 80, 80), (60, 80)), _record("tall", (64, 80, 80), (80, 60)))
    images = (ImageRecord("wide.png", (480, 640), (480, 640), 0), ImageRecord("tall.png", (640, 480), (640, 480), 0))
    result = RunResult("multi_image", Path("."), {}, (), images, outputs)
    console = make_console()
    with console.capture() as cap:
        console.print(_levels_table(result))
    row = next(line for line in cap.get().splitlines() if "p3" in line)
    assert "60-80 x 60-80" in row, row


def test_sweep_duplicates_and_shared_scales_are_named():
    from featvis_run.report.sweep import JobRow, mark_duplicates, scale_sharing

    fixed = {"mode": "fixed", "range": [0.0, 1.0]}
    rows = [
        JobRow("0_a", {}, "ok", digest="x", scale=fixed),
        JobRow("1_b", {}, "ok", digest="y", scale=fixed),
        JobRow("2_c", {}, "ok", digest="x", scale=fixed),
        JobRow("3_d", {}, "error", digest=None, scale=fixed),
    ]
    assert [r.duplicate_of for r in mark_duplicates(rows)] == [None, None, "0_a", None]
    assert scale_sharing(rows).startswith("All jobs share one colour scale (fixed)")
    per_run = [
        JobRow("0_a", {}, "ok", scale={"mode": "per_run", "ranges": {"run": [0, 2]}}),
        JobRow("1_b", {}, "ok", scale={"mode": "per_run", "ranges": {"run": [0, 2]}}),
        JobRow("2_c", {}, "ok", scale={"mode": "per_run", "ranges": {"run": [0, 3]}}),
    ]
    assert "share a colour scale (colours compare between them): 0_a, 1_b." in scale_sharing(per_run)
    assert scale_sharing([JobRow("0_a", {}, "ok", scale={"mode": "per_map"})]).startswith("No two jobs share")


def test_the_summary_prints_the_cache_counters():
    from featvis_run.report.summary import print_summary

    cache = {
        "enabled": True,
        "dir": "/c",
        "turned_off": None,
        "hits": 3,
        "misses": 2,
        "corrupt_recomputed": 0,
        "written_bytes": 10,
        "evicted_entries": 4,
        "evicted_bytes": 9,
        "size_bytes": 2_500_000,
        "max_bytes": 4e9,
    }
    result = RunResult(
        "multi_image", Path("."), {}, (), (), (), extra={"cache": cache, "cache_hit": False, "forward_passes": 2}
    )
    console = make_console()
    with console.capture() as cap:
        print_summary(result, console)
    line = next(line for line in cap.get().splitlines() if line.startswith("cache"))
    assert line == "cache miss: 2 forward pass(es), 3 hit(s), 2 miss(es), 2.5 MB of 4 GB, 4 evicted in /c", line
