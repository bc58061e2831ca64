"""Benchmarks for the README's performance section (``make bench``).

1. The 8-job drawing sweep (4 reducers x topk 4, 8) on one image with RetinaNet-R50, run as one Hydra multirun with
   the activation cache, against the same 8 jobs as separate cold processes with ``cache=off``: wall time, forward
   passes and peak memory of each.
2. Rendering one 256-channel FPN map on the image: featvis-run against MMEngine's ``Visualizer.draw_featmap``, for a
   topk=20 overlaid grid and a squeeze_mean overlay.

Results are printed and written as Markdown (``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REDUCERS = ["pixel_wise_max", "squeeze_mean", "select_max", "none"]
TOPKS = [4, 8]
FEATVIS = str(Path(sys.executable).parent / "featvis-run")


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MB) measured by GNU time."""
    stats = cwd / "time.txt"
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(stats), *cmd], cwd=cwd, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return wall, int(stats.read_text().split()[-1]) / 1024


def bench_image(work: Path) -> Path:
    from featvis_run.store.images import demo_image_path

    demo = demo_image_path()
    if demo.exists():
        return demo
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    img = (rng.random((480, 640, 3)) * 80 + 60).astype(np.uint8)
    cv2.circle(img, (200, 240), 90, (0, 0, 255), -1)
    cv2.rectangle(img, (380, 120), (560, 360), (255, 0, 0), -1)
    path = work / "bench.png"
    cv2.imwrite(str(path), img)
    return path


def bench_sweep(image: Path, work: Path, model: str) -> dict:
    common = [f"image={image}", f"model={model}"]
    sweep_dir = work / "sweep"
    cmd = [FEATVIS, "-m", *common, f"reducer={','.join(REDUCERS)}", f"topk={','.join(map(str, TOPKS))}"]
    wall, rss = timed([*cmd, f"cache.dir={work / 'cache'}", f"hydra.sweep.dir={sweep_dir}"], work)
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["jobs"] == 8 and summary["failed"] == 0, summary
    cold_wall, cold_rss, cold_passes = 0.0, 0.0, 0
    for i, (reducer, topk) in enumerate(itertools.product(REDUCERS, TOPKS)):
        out = work / "cold" / str(i)
        w, r = timed([FEATVIS, *common, f"reducer={reducer}", f"topk={topk}", "cache=off", f"output.dir={out}"], work)
        cold_wall += w
        cold_rss = max(cold_rss, r)
        cold_passes += json.loads((out / "manifest.json").read_text())["forward_passes"]
    return {
        "sweep_seconds": wall,
        "sweep_forward_passes": summary["forward_passes"],
        "sweep_peak_mb": rss,
        "cold_seconds": cold_wall,
        "cold_forward_passes": cold_passes,
        "cold_peak_mb": cold_rss,
        "speedup": cold_wall / wall,
    }


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_render(image_path: Path, model: str, repeats: int) -> dict:
    import cv2
    import torch
    from mmengine.visualization import Visualizer

    from featvis_run.drawing.render import RenderOptions, render_map
    from featvis_run.maps.geometry import crop_valid
    from featvis_run.maps.reduce import reduce_channels
    from featvis_run.models.source import FeatureSource
    from featvis_run.recording.levels import LevelKey
    from featvis_run.schema import ModelConfig, RecorderConfig
    from featvis_run.store.cache import ActivationCache
    from featvis_run.store.images import InputImage
    from featvis_run.timing import Timer

    mmdet_config = {"retinanet_r50": "retinanet/retinanet_r50_fpn_2x_coco.py"}.get(model, model)
    source = FeatureSource(
        ModelConfig(name=model, mmdet_config=mmdet_config),
        RecorderConfig(
            name="fpn", recorders={"neck": {"source": "neck"}}, mappings={"p3": {"recorder": "neck", "data_idx": 0}}
        ),
        ActivationCache(None),
        Timer(),
    )
    bgr = cv2.imread(str(image_path))
    (item,) = source.features([InputImage("bench", image_path, bgr, "bench")])
    feat = item.features[LevelKey("neck", "p3")]
    geom = item.geometry
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    full = torch.from_numpy(crop_valid(feat, geom).copy())
    grid_opts = RenderOptions(arrangement=(4, 5), gap=0, max_tile=None)  # image-size tiles, as MMEngine draws

    def ours(reducer: str, topk: int, opts: RenderOptions):
        cropped = crop_valid(feat, geom)
        return render_map(reduce_channels(cropped, reducer, topk), feat.shape[1:], geom, bgr, opts)

    results = {"map_shape": list(feat.shape), "image_hw": list(bgr.shape[:2])}
    cases = {
        "topk20_grid": (
            lambda: ours("none", 20, grid_opts),
            lambda: Visualizer.draw_featmap(full, rgb, channel_reduction=None, topk=20, arrangement=(4, 5)),
        ),
        "squeeze_mean_overlay": (
            lambda: ours("squeeze_mean", 20, RenderOptions()),
            lambda: Visualizer.draw_featmap(full, rgb, channel_reduction="squeeze_mean"),
        ),
    }
    import warnings

    warnings.filterwarnings("ignore")
    for name, (fast, reference) in cases.items():
        fast()
        reference()  # warm up both (imports, matplotlib fonts)
        t_ours = median_time(fast, repeats)
        t_ref = median_time(reference, repeats)
        results[name] = {"featvis_ms": t_ours * 1e3, "mmengine_ms": t_ref * 1e3, "speedup": t_ref / t_ours}
    return results


def markdown(sweep: dict, render: dict, model: str, image: Path) -> str:
    machine = f"{platform.processor() or platform.machine()}, {shutil.os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        "# Benchmark results",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `make bench` (scripts/bench.py) on {machine}, CPU only.",
        f"Model {model} (random init), image `{image.name}`.",
        "",
        "## 8-job drawing sweep: one multirun with the activation cache vs 8 cold processes (cache=off)",
        "",
        "| | wall time (s) | forward passes | peak RSS (MB) |",
        "|---|---|---|---|",
        f"| `featvis-run -m reducer=... topk=4,8` | {sweep['sweep_seconds']:.1f} | {sweep['sweep_forward_passes']} | {sweep['sweep_peak_mb']:.0f} |",
        f"| 8 separate `featvis-run ... cache=off` | {sweep['cold_seconds']:.1f} | {sweep['cold_forward_passes']} | {sweep['cold_peak_mb']:.0f} (max of one) |",
        f"| speed-up | **{sweep['speedup']:.1f}x** | | |",
        "",
        f"## Rendering one {render['map_shape'][0]}-channel FPN map ({render['map_shape'][1]}x{render['map_shape'][2]}) "
        f"on the {render['image_hw'][0]}x{render['image_hw'][1]} image",
        "",
        "| case | featvis-run (ms) | MMEngine draw_featmap (ms) | speed-up |",
        "|---|---|---|---|",
    ]
    for case in ("topk20_grid", "squeeze_mean_overlay"):
        r = render[case]
        lines.append(f"| {case} | {r['featvis_ms']:.1f} | {r['mmengine_ms']:.1f} | **{r['speedup']:.1f}x** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/RESULTS.md"))
    parser.add_argument("--model", default="retinanet_r50")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="featvis-bench-") as tmp:
        work = Path(tmp)
        image = bench_image(work)
        sweep = bench_sweep(image, work, args.model)
        render = bench_render(image, args.model, args.repeats)
    text = markdown(sweep, render, args.model, image)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    (args.out.with_suffix(".json")).write_text(json.dumps({"sweep": sweep, "render": render}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
