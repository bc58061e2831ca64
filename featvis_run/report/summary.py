"""The rich terminal summary of a run: model line, outputs table, notes, timings, output folder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from featvis_run.store.manifest import RunResult

__all__ = ["explained_lines", "make_console", "print_job_line", "print_layers", "print_summary"]


def make_console() -> Console:
    """A console at the terminal's width; for a file or pipe (logs, CI) tables 160 columns wide and lines never
    wrapped (a note naming a long path stays one line that grep finds)."""
    console = Console()
    return console if console.is_terminal else Console(width=160, soft_wrap=True)


def _e(value: Any) -> str:
    """``value`` as text that rich prints literally (a path or note holding ``[/b]`` or ``[lo,hi]``)."""
    return escape(str(value))


def _add_row(table: Table, *cells: Any) -> None:
    """A table row whose cells print literally (rich reads markup in plain string cells)."""
    table.add_row(*(_e(c) for c in cells))


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(v) for v in shape)


def _channels(ch: Sequence[int]) -> str:
    if not ch:
        return "all"
    text = ",".join(str(c) for c in ch[:8])
    return text + (f",… ({len(ch)})" if len(ch) > 8 else "")


_LOUD = ("RANDOM INIT", "NON-FINITE", "PARTIAL CHECKPOINT")


def print_job_line(result: RunResult, console: Console | None = None) -> None:
    """One line for a sweep job (the sweep's summary table lists them all), and its loud notes."""
    console = console or make_console()
    extra = result.extra
    state = "cache hit" if extra.get("cache_hit") else f"{extra.get('forward_passes', 0)} forward pass(es)"
    status = "[green]ok[/]" if result.ok else f"[bold red]{len(result.failures)} failed[/]"
    seconds = sum(result.timings.values())
    console.print(
        f"[bold]job[/] {_e(result.out_dir.name)}: {status}, {len(result.outputs)} maps, {state}, {seconds:.2f} s",
        highlight=False,
    )
    for note in result.notes:
        if note.startswith(_LOUD):
            console.print(f"  [bold red]note:[/] {_e(note)}", highlight=False)


def print_summary(result: RunResult, console: Console | None = None) -> None:
    """Print what the run drew, from which model and weights, how long it took and where it went."""
    console = console or make_console()
    for m in result.models:
        weights = (
            f"[bold red]random init (seed {m.seed})[/]"
            if m.sha256 is None
            else f"{_e(m.checkpoint)} (sha256 {m.sha256[:12]}…)"
        )
        console.print(
            f"[bold]model[/] {_e(m.name)}  [dim]{_e(m.mmdet_config)}[/]  weights: {weights}  device: {_e(m.device)}",
            soft_wrap=True,  # one line however long the paths: the terminal wraps it, a log keeps it whole
        )
        if m.sha256 is not None and (m.missing_keys or m.unexpected_keys):
            console.print(
                f"  [yellow]checkpoint keys: {m.matched_keys} loaded, {m.missing_keys} model parameters not in it, "
                f"{m.unexpected_keys} unused[/]"
            )
    if "comparisons" in result.extra:
        console.print(_diff_table(result))
    elif result.experiment == "checkpoints":
        console.print(_checkpoints_table(result))
    else:
        console.print(_outputs_table(result) if result.experiment == "single" else _levels_table(result))
    metrics = result.extra.get("metrics")
    if metrics:
        console.print(_metrics_line(metrics), highlight=False)
    for line in explained_lines(result):
        console.print(f"[bold]explained[/] {_e(line)}", highlight=False)
    for note in result.notes:
        style = "bold red" if note.startswith(_LOUD) else "yellow"
        console.print(f"[{style}]note:[/] {_e(note)}")
    for f in result.failures:
        console.print(f"[bold red]failed:[/] {_e(f.item)}: {_e(f.reason)}")
    if result.extra.get("analysis"):
        _print_analysis(result.extra["analysis"], console)
    cache = result.extra.get("cache")
    if cache:
        state = "off" if not cache["enabled"] else ("hit" if result.extra["cache_hit"] else "miss")
        bound = f" of {cache['max_bytes'] / 1e9:.3g} GB" if cache.get("max_bytes") else ""
        evicted = f", {cache['evicted_entries']} evicted" if cache.get("evicted_entries") else ""
        console.print(
            f"[bold]cache[/] {state}: {result.extra['forward_passes']} forward pass(es), {cache['hits']} hit(s), "
            f"{cache['misses']} miss(es), {cache['size_bytes'] / 1e6:.1f} MB{bound}{evicted} in "
            f"{_e(cache['dir'] or '-')}"
        )
        if cache.get("turned_off"):
            console.print(f"[yellow]note:[/] {_e(cache['turned_off'])}")
        for reason in cache.get("recomputed", []):  # entries not trusted: unreadable, another key, older format
            console.print(f"[yellow]note:[/] {_e(reason)}")
    if result.extra.get("resumed_images"):
        console.print(f"[bold]resumed[/] {result.extra['resumed_images']} image(s) finished by an earlier run here")
    timings = "  ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    console.print(f"[bold]timings[/] {_e(timings)}")
    index = result.out_dir / "index.html"
    console.print(f"[bold]output[/] {_e(result.out_dir)}  (manifest.json{', index.html' if index.exists() else ''})")


def _print_analysis(entry: dict[str, Any], console: Console) -> None:
    """The channel statistics (dead channels per level, loud) and the atlas of ``analysis.*``."""
    if entry.get("channels_csv"):
        levels = entry.get("levels", [])
        dead = [lv for lv in levels if lv["dead"]]
        found = f"{sum(len(lv['dead']) for lv in dead)} dead channel(s)" if dead else "no dead channel"
        console.print(
            f"[bold]channels[/] {_e(entry['channels_csv'])}: {len(levels)} level(s) over {entry['images']} image(s), "
            f"{found}",
            highlight=False,
        )
        for lv in dead:
            where = f"{lv['layer']}/{lv['level']}: {len(lv['dead'])} of {lv['channels']} ({_channels(lv['dead'])})"
            console.print(f"  [bold red]dead:[/] {_e(where)}", highlight=False)
    if entry.get("atlas"):
        console.print(
            f"[bold]atlas[/] {_e(entry['atlas'])} (top {entry['top_images']} image(s) per channel)", highlight=False
        )


def _metrics_line(block: dict[str, Any]) -> str:
    """The explanation metrics' means (and the random baseline's) on one line."""
    keys = ("pointing_game", "energy_in_boxes", "deletion_auc", "insertion_auc")

    def values(b: dict[str, Any]) -> str:
        return "  ".join(f"{k} {_num(b.get(k))}" for k in keys)

    head = f"[bold]metrics[/] {_e(block.get('reducer'))} {_e(block.get('layer'))}, {block.get('images', 0)} image(s): "
    line = head + _e(values(block))
    if block.get("random"):
        line += f"  [dim]random: {_e(values(block['random']))}[/]"
    return line


def explained_lines(result: RunResult, shown: int = 3) -> list[str]:
    """Grad-CAM/EigenCAM runs: per image, the target and the detections explained (the best ``shown``)."""
    lines = []
    for image in result.images:
        explained = image.explained or {}
        if not explained:
            continue
        dets = explained.get("detections") or []
        listed = ", ".join(f"{d['class']} {d['score']:.2f} at {[round(v) for v in d['box']]}" for d in dets[:shown])
        more = f" (+{len(dets) - shown} more)" if len(dets) > shown else ""
        what = f"{len(dets)} detection(s): {listed}{more}" if dets else "no detection"
        lines.append(f"{image.id or image.path}: target {explained.get('target')}; {what}")
    return lines


def _outputs_table(result: RunResult) -> Table:
    table = Table(title=_e(f"{result.experiment}: {len(result.outputs)} maps"), show_lines=False)
    for col in ("image", "layer", "level", "C x H x W", "reducer", "channels", "file"):
        table.add_column(col, overflow="fold")
    for o in result.outputs:
        _add_row(table, o.image, o.layer, o.level, _shape(o.shape), o.reducer, _channels(o.channels), o.file)
    return table


def _levels_table(result: RunResult) -> Table:
    """One row per layer/level, aggregated over images."""
    title = (
        f"{result.experiment}: {len(result.images)} images, {len(result.failures)} failed, {len(result.outputs)} maps"
    )
    table = Table(title=_e(title))
    for col in ("layer", "level", "images", "C", "H x W on image", "reducer", "mean of map means", "contact sheet"):
        table.add_column(col, overflow="fold")
    groups: dict[tuple[str, str], list[Any]] = {}
    for o in result.outputs:
        groups.setdefault((o.layer, o.level), []).append(o)
    sheets = {(s["layer"], s["level"]): s["file"] for s in result.extra.get("contact_sheets", [])}
    for (layer, level), outs in groups.items():
        hw = " x ".join(_span([_valid_hw(o)[i] for o in outs]) for i in (0, 1))
        means = [o.stats["mean"] for o in outs if o.stats["mean"] is not None]
        mean = sum(means) / len(means) if means else float("nan")
        channels = sorted({o.shape[0] for o in outs})
        row = (layer, level, str(len(outs)), ",".join(map(str, channels)), hw, outs[0].reducer, f"{mean:.4g}")
        _add_row(table, *row, sheets.get((layer, level), ""))
    return table


def _valid_hw(o: Any) -> tuple[int, int]:
    """The map cells covering the image (the padded grid when none were recorded)."""
    return tuple(o.valid_hw) if o.valid_hw else (o.shape[1], o.shape[2])


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"


def _checkpoints_table(result: RunResult) -> Table:
    """Per image and level of ``experiment=checkpoints``: the shared colour range, the first checkpoint's change to
    the last (mean |A - B|, CKA) and the GIF."""
    ckpts = result.extra.get("checkpoints", [])
    ok = [c["checkpoint"] for c in ckpts if c["status"] == "ok"]
    title = f"checkpoints: {len(ok)} of {len(ckpts)} loaded ({', '.join(ok) or '-'}), {len(result.images)} images"
    table = Table(title=_e(title))
    for col in ("image", "layer", "level", "scale", f"{ok[0] if ok else 'first'} vs last: mean|A-B|", "CKA", "gif"):
        table.add_column(col, overflow="fold")
    for lv in result.extra.get("levels", []):
        first = lv["change"][0] if lv["change"] else {}
        scale = "-" if lv["scale"] is None else f"{lv['scale'][0]:.3g}..{lv['scale'][1]:.3g}"
        row = (lv["image"], lv["layer"], lv["level"], scale, _num(first.get("mean_abs_diff")), _num(first.get("cka")))
        _add_row(table, *row, lv["gif"])
    return table


def _diff_table(result: RunResult) -> Table:
    """Per image and level: shapes, common grid, mean |A - B|, cosine, CKA, diff file."""
    a, b = (m.name for m in result.models)
    table = Table(title=_e(f"diff ({result.extra['diff_mode']}): A = {a}, B = {b}"))
    for col in ("image", "level", "A: C x H x W", "B: C x H x W", "grid", "mean |A-B|", "cosine", "CKA", "diff"):
        table.add_column(col, overflow="fold")
    for c in result.extra["comparisons"]:
        grid = "same" if c["resized_to"] is None else "resized to " + _shape(c["resized_to"])
        if not c["elementwise"]:
            grid += ", channels differ"
        row = (c["image"], c["level"], _shape(c["shape_a"]), _shape(c["shape_b"]), grid)
        _add_row(table, *row, _num(c["mean_abs_diff"]), _num(c["cosine"]), _num(c["cka"]), c["diff_file"])
    return table


def print_layers(
    layers: Sequence[Any], out_dir: Any, notes: Sequence[str] = (), console: Console | None = None
) -> None:
    """Print every module that produced a tensor, with its output shapes and token grids (``mode=layers``)."""
    console = console or make_console()
    table = Table(title="modules and output shapes of their first call (use the name as recorder source)")
    for col in ("name", "type", "output shapes", "calls", "params"):
        table.add_column(col, overflow="fold")
    for layer in layers:
        if layer.shapes:
            shapes = "  ".join(_shape(s) for s in layer.shapes)
            if layer.grids:
                shapes += "  (" + "; ".join(layer.grids) + ")"
            _add_row(table, layer.name, layer.type, shapes, str(layer.calls), f"{layer.params:,}")
    console.print(table)
    for note in notes:
        console.print(f"[yellow]note:[/] {_e(note)}")
    console.print(f"[bold]output[/] {_e(out_dir)}/layers.json")
