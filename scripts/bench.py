"""Benchmarks behind the README's performance section (``make bench``); writes benchmarks/RESULTS.md and .json.

1. Sweep jobs: the marginal wall time of one more job in a cached sweep (RetinaNet-R50, a 150 MB checkpoint,
   320x240 scale): (time of a 16-job sweep - time of an 8-job sweep) / 8, both with a warm activation cache.
2. The 8-job sweep (4 reducers x topk 4, 8) as one multirun, with an empty and with a warm cache, against the same 8
   jobs as separate cold processes with ``cache=off`` (the seed's one-process-per-option way).
3. Many images: ``experiment=multi_image`` throughput (images / wall time of the image loop less the model build,
   every map written; the better of two runs) against a bare mmdet loop (``inference_detector`` per image, timed
   after the model is built and one warm-up image), for the demo detector and for RetinaNet-R50, at
   ``images.batch_size`` 1 and 2.
4. ``featvis-run --help`` wall time (median of 5, after one run that fills the help cache).
5. Rendering one 256-channel FPN map: featvis-run against MMEngine's ``Visualizer.draw_featmap``.
6. PNG encoding: time and size of a 640x480 heatmap at OpenCV compression levels.
7. ``pictures``: bytes and drawing time per image, ``output.pictures=composite`` against ``maps`` (RetinaNet-R50,
   1280x960, warm cache, one drawing worker); and ``pace``: multi_image's marginal time per image against a bare
   loop (demo detector, 48 images of 640x480, cache=off). See scripts/bench_storage.py.

``--only pictures,pace`` runs only the named sections (help, sweeps, images, render, png, pictures, pace) and keeps
the other sections' numbers from the existing RESULTS.json.

Run it on an otherwise idle machine: other processes on the cores change every number.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_parts import bare_loop_script, make_images, make_r50_checkpoint, render_vs_mmengine  # noqa: E402
from bench_storage import bench_pace, bench_pictures  # noqa: E402
from bench_storage import markdown as storage_markdown  # noqa: E402

SECTIONS = ("help", "sweeps", "images", "render", "png", "pictures", "pace")

REDUCERS = ["pixel_wise_max", "squeeze_mean", "select_max", "none"]
FEATVIS = str(Path(sys.executable).parent / "featvis-run")
R50_SCALE = "model.test_scale=[320,240]"


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` and return its wall time; a failure stops the benchmark with the command's stderr."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall


def sweep_cmd(image: Path, ckpt: Path, topks: list[int], cache: str, sweep_dir: Path) -> list[str]:
    return [
        FEATVIS, "-m", f"image={image}", "model=retinanet_r50", f"model.checkpoint={ckpt}", R50_SCALE,
        f"reducer={','.join(REDUCERS)}", f"topk={','.join(map(str, topks))}", cache, f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip


def bench_sweeps(image: Path, ckpt: Path, work: Path) -> dict:
    cache = f"cache.dir={work / 'cache'}"
    empty = run(sweep_cmd(image, ckpt, [4, 8], cache, work / "sweep-empty"), work)  # fills the cache
    warm8 = [run(sweep_cmd(image, ckpt, [4, 8], cache, work / f"sweep8-{i}"), work) for i in range(2)]
    warm16 = [run(sweep_cmd(image, ckpt, [4, 5, 6, 8], cache, work / f"sweep16-{i}"), work) for i in range(2)]
    summary = json.loads((work / "sweep8-0" / "summary.json").read_text())
    assert summary["jobs"] == 8 and summary["failed"] == 0, summary
    cold = 0.0
    for i, (reducer, topk) in enumerate(itertools.product(REDUCERS, [4, 8])):
        cmd = [FEATVIS, f"image={image}", "model=retinanet_r50", f"model.checkpoint={ckpt}", R50_SCALE]
        cold += run(
            [*cmd, f"reducer={reducer}", f"topk={topk}", "cache=off", f"output.dir={work / 'cold' / str(i)}"], work
        )
    t8, t16 = min(warm8), min(warm16)
    return {
        "sweep8_empty_cache_s": empty,
        "sweep8_warm_cache_s": t8,
        "sweep16_warm_cache_s": t16,
        "marginal_job_s": (t16 - t8) / 8,
        "cold8_s": cold,
        "speedup_empty_cache": cold / empty,
        "speedup_warm_cache": cold / t8,
        "sweep_forward_passes_empty_cache": json.loads((work / "sweep-empty" / "summary.json").read_text())[
            "forward_passes"
        ],
    }


def bench_images(images: Path, work: Path, model_args: list[str], bare: dict, label: str) -> dict:
    n = len(list(images.glob("*.png")))
    script = work / f"bare_{label}.py"
    script.write_text(bare_loop_script(**bare))
    proc = subprocess.run([sys.executable, str(script), str(images)], capture_output=True, text=True, cwd=work)
    if proc.returncode != 0:
        raise SystemExit(f"bare loop failed:\n{proc.stderr[-3000:]}")
    bare_rate = float(proc.stdout.split()[-1])
    result = {"images": n, "bare_img_s": bare_rate}
    for bs in (1, 2):
        rates = []
        for attempt in range(2):  # the better of two runs, as the machine's other work varies
            out = work / f"multi-{label}-{bs}-{attempt}"
            cmd = [FEATVIS, "experiment=multi_image", f"images={images}", *model_args, f"images.batch_size={bs}"]
            run([*cmd, "cache=off", f"output.dir={out}"], work)
            manifest = json.loads((out / "manifest.json").read_text())
            assert len(manifest["images"]) == n and not manifest["failures"], manifest["failures"]
            timings = manifest["timings"]
            # the model is built lazily inside the image loop; the bare loop builds it before its clock starts
            rates.append(n / (timings["image_loop"] - timings.get("model_load", 0.0)))
        result[f"bs{bs}_img_s"] = max(rates)
        result[f"bs{bs}_ratio"] = max(rates) / bare_rate
        result[f"bs{bs}_maps"] = len(manifest["outputs"])
    return result


def bench_help(work: Path) -> float:
    run([FEATVIS, "--help"], work)
    return statistics.median(run([FEATVIS, "--help"], work) for _ in range(5))


def bench_png() -> list[dict]:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.random((60, 80)).astype(np.float32), (0, 0), 3)
    heat = cv2.applyColorMap(cv2.resize((smooth / smooth.max() * 255).astype(np.uint8), (640, 480)), cv2.COLORMAP_JET)
    picture = cv2.addWeighted(heat, 0.5, (rng.random((480, 640, 3)) * 255).astype(np.uint8), 0.5, 0)
    rows = []
    for level in (None, 0, 1, 3, 6, 9):
        params = [] if level is None else [cv2.IMWRITE_PNG_COMPRESSION, level]
        times = []
        for _ in range(20):
            started = time.perf_counter()
            ok, data = cv2.imencode(".png", picture, params)
            times.append(time.perf_counter() - started)
        rows.append(
            {
                "level": "default" if level is None else level,
                "ms": statistics.median(times) * 1e3,
                "kb": len(data) / 1024,
            }
        )
    return rows


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, CPU only, "
        f"load average {load:.1f} at the start"
    )


def markdown(r: dict) -> str:
    lines = ["# Benchmark results", ""]
    for section, info in r.get("measured", {}).items():
        lines.append(f"- `{section}` measured {info[0]} on {', '.join(info[1:])}.")
    lines += ["", *_classic_markdown(r), *storage_markdown(r.get("pictures"), r.get("pace"))]
    return "\n".join(lines) + "\n"


def _classic_markdown(r: dict) -> list[str]:
    if not all(k in r for k in ("sweep", "images_demo", "images_r50", "render", "png", "help_s")):
        return []
    s, demo, r50, render = r["sweep"], r["images_demo"], r["images_r50"], r["render"]
    lines = [
        "## Sweep jobs (RetinaNet-R50, 150 MB checkpoint, 320x240, one image)",
        "",
        "| measure | value | goal |",
        "|---|---|---|",
        f"| marginal wall time of one more cached sweep job ((16 jobs - 8 jobs) / 8, warm cache) | "
        f"{s['marginal_job_s']:.2f} s | <= 0.25 s |",
        f"| 8-job sweep, empty cache | {s['sweep8_empty_cache_s']:.1f} s ({s['sweep_forward_passes_empty_cache']} forward pass) | |",
        f"| 8-job sweep, warm cache | {s['sweep8_warm_cache_s']:.1f} s | |",
        f"| 8 cold `featvis-run ... cache=off` processes | {s['cold8_s']:.1f} s | |",
        f"| speed-up, empty cache | **{s['speedup_empty_cache']:.1f}x** | >= 10x |",
        f"| speed-up, warm cache | **{s['speedup_warm_cache']:.1f}x** | >= 10x |",
        "",
        "## Many images: `experiment=multi_image` (every map written) against a bare mmdet loop",
        "",
        "| model | images | bare loop (img/s) | batch_size=1 (img/s, ratio) | batch_size=2 (img/s, ratio) | maps written |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in (("demo detector", demo), ("RetinaNet-R50 320x240", r50)):
        lines.append(
            f"| {name} | {m['images']} | {m['bare_img_s']:.2f} | {m['bs1_img_s']:.2f} ({m['bs1_ratio']:.2f}x) | "
            f"{m['bs2_img_s']:.2f} ({m['bs2_ratio']:.2f}x) | {m['bs1_maps']} |"
        )
    lines += [
        "",
        "Goal: >= 0.7x of the bare loop with the demo detector.",
        "",
        f"## `featvis-run --help`: {r['help_s']:.2f} s (median of 5; goal <= 0.5 s)",
        "",
        f"## Rendering one {render['map_shape'][0]}-channel FPN map ({render['map_shape'][1]}x{render['map_shape'][2]}) "
        f"on the {render['image_hw'][0]}x{render['image_hw'][1]} demo scene",
        "",
        "| case | featvis-run (ms) | MMEngine draw_featmap (ms) | speed-up |",
        "|---|---|---|---|",
    ]
    for case in ("topk20_grid", "squeeze_mean_overlay"):
        c = render[case]
        lines.append(f"| {case} | {c['featvis_ms']:.1f} | {c['mmengine_ms']:.1f} | **{c['speedup']:.1f}x** |")
    lines += ["", "## PNG encoding of a 640x480 overlay (OpenCV)", "", "| compression | ms | KB |", "|---|---|---|"]
    lines += [f"| {p['level']} | {p['ms']:.1f} | {p['kb']:.0f} |" for p in r["png"]]
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/RESULTS.md"))
    parser.add_argument("--images", type=int, default=32, help="images of the demo-detector throughput run")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    previous = args.out.with_suffix(".json")
    results: dict = json.loads(previous.read_text()) if set(only) != set(SECTIONS) and previous.is_file() else {}
    measured = results.setdefault("measured", {})
    if "when" in results and not measured:  # an earlier version's single date
        measured.update(
            {s: (results["when"], results["machine"]) for s in ("help", "sweeps", "images", "render", "png")}
        )
    with tempfile.TemporaryDirectory(prefix="featvis-bench-") as tmp:
        work = Path(tmp)
        from featvis_run.store.images import demo_image_path

        image = demo_image_path()
        ckpt = make_r50_checkpoint(work / "r50.pth") if {"sweeps", "images"} & set(only) else None
        for section in only:
            measured[section] = (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine())
            if section == "help":
                results["help_s"] = bench_help(work)
            elif section == "sweeps":
                results["sweep"] = bench_sweeps(image, ckpt, work)
            elif section == "images":
                demo_images = make_images(work / "demo-images", args.images, (320, 320))
                results["images_demo"] = bench_images(demo_images, work, [], {"model": "demo"}, "demo")
                r50_images = make_images(work / "r50-images", 8, (240, 320))
                r50_args = ["model=retinanet_r50", f"model.checkpoint={ckpt}", R50_SCALE]
                results["images_r50"] = bench_images(
                    r50_images, work, r50_args, {"model": "r50", "checkpoint": str(ckpt)}, "r50"
                )
            elif section == "render":
                results["render"] = render_vs_mmengine(image)
            elif section == "png":
                results["png"] = bench_png()
            elif section == "pictures":
                results["pictures"] = bench_pictures(work)
            elif section == "pace":
                results["pace"] = bench_pace(work)
            measured[section] = (*measured[section], f"load average {os.getloadavg()[0]:.1f} at the end")
    results["when"], results["machine"] = started, machine()
    text = markdown(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
