"""Benchmark sections of scripts/bench.py on what a run stores and how fast it draws (``output.pictures``).

- ``pictures``: RetinaNet-R50 (random init) on 1280x960 inputs, warm activation cache, one drawing worker
  (``FEATVIS_DRAW_WORKERS=1``): bytes written per image and drawing time per image (``timings.render``) with
  ``output.pictures=composite`` against ``maps``; the forward pass per image from the cold run that fills the cache.
- ``pace``: ``experiment=multi_image`` with the demo detector (48 generated 640x480 images, ``cache=off``, the
  multi-image default) against a bare mmdet loop: marginal seconds per image, (loop of 48 - loop of 16) / 32, each
  loop timed without the model build, the better of two runs.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from bench_parts import bare_loop_script, make_images

FEATVIS = str(Path(sys.executable).parent / "featvis-run")
#: RetinaNet-R50 1x forward pass on a V100, FP32, 800x1333 (mmdet 3.3's configs/retinanet/metafile.yml)
GPU_FORWARD_MS = 52.63
_STATE = {".featvis", ".hydra", "manifest.json", "index.html", "cli.log"}


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _featvis(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict:
    """Run featvis-run and return its manifest, with the CPU seconds the process used as ``_cpu_s``."""
    out = next(a.split("=", 1)[1] for a in args if a.startswith("output.dir="))
    cpu = _children_cpu()
    proc = subprocess.run([FEATVIS, *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"featvis-run failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-3000:]}")
    manifest = json.loads((Path(out) / "manifest.json").read_text())
    manifest["_cpu_s"] = _children_cpu() - cpu
    return manifest


def _bare(script: Path, images: Path, n: int, cwd: Path) -> tuple[float, float]:
    """(seconds per image after the warm-up, CPU seconds of the whole process) of the bare loop over ``n`` images."""
    cpu = _children_cpu()
    proc = subprocess.run([sys.executable, str(script), str(images), str(n)], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"bare loop failed:\n{proc.stderr[-3000:]}")
    return 1.0 / float(proc.stdout.split()[-1]), _children_cpu() - cpu


def _written_bytes(out: Path) -> int:
    """Bytes of every file the run wrote for its images (pictures, arrays, stored inputs, contact sheets), without
    the manifest, the report page and the run's state."""
    total = 0
    for top in out.iterdir():
        if top.name in _STATE:
            continue
        files = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
    return total


def bench_pictures(work: Path, count: int = 3) -> dict:
    """composite against maps on RetinaNet-R50, 1280x960, warm cache, one drawing worker."""
    images = make_images(work / "pictures-images", count, (960, 1280))
    base = ["experiment=multi_image", f"images={images}", "model=retinanet_r50", f"cache.dir={work / 'pcache'}"]
    one = {"FEATVIS_DRAW_WORKERS": "1"}
    cold = _featvis([*base, "output.pictures=maps", f"output.dir={work / 'pictures-cold'}"], work, one)
    result: dict = {
        "images": count,
        "input_hw": [960, 1280],
        "network_input_hw": cold["images"][0]["input_hw"],
        "forward_s_per_image": cold["timings"]["forward"] / count,
        "levels": len(cold["outputs"]) // count,
    }
    for mode in ("composite", "maps"):
        best = None
        for attempt in range(2):
            out = work / f"pictures-{mode}-{attempt}"
            manifest = _featvis([*base, f"output.pictures={mode}", f"output.dir={out}"], work, one)
            assert manifest["forward_passes"] == 0, "the cache was not warm"
            render = manifest["timings"].get("render", 0.0) / count
            best = render if best is None else min(best, render)
        result[f"{mode}_bytes_per_image"] = _written_bytes(out) / count
        result[f"{mode}_render_s_per_image"] = best
    result["bytes_ratio"] = result["composite_bytes_per_image"] / result["maps_bytes_per_image"]
    result["render_ratio"] = result["composite_render_s_per_image"] / max(result["maps_render_s_per_image"], 1e-9)
    return result


def _loop_s(manifest: dict) -> float:
    t = manifest["timings"]
    return t["image_loop"] - t.get("model_load", 0.0)  # the model is built lazily inside the loop


def bench_pace(work: Path, count: int = 48, small: int = 16) -> dict:
    """Marginal seconds per image of experiment=multi_image (default pictures, and composite) and a bare loop."""
    images = make_images(work / "pace-images", count, (480, 640))
    script = work / "bare_pace.py"
    script.write_text(bare_loop_script(model="demo"))
    modes = {"default": [], "composite": ["output.pictures=composite"]}
    wall: dict[str, list[float]] = {m: [] for m in ("bare", *modes)}
    cpu: dict[str, list[float]] = {m: [] for m in ("bare", *modes)}
    render: dict[str, list[float]] = {m: [] for m in modes}
    default_pictures = None
    for attempt in range(2):  # interleaved, the better of two: the machine's other work varies
        (_, cpu_small), (per_image, cpu_all) = (_bare(script, images, n, work) for n in (small, count))
        wall["bare"].append(per_image)
        cpu["bare"].append((cpu_all - cpu_small) / (count - small))
        for label, extra in modes.items():
            runs = {}
            for n in (small, count):
                out = work / f"pace-{label}-{n}-{attempt}"
                args = ["experiment=multi_image", f"images={images}", f"images.limit={n}", "cache=off", *extra]
                runs[n] = _featvis([*args, f"output.dir={out}"], work)
                assert len(runs[n]["images"]) == n and not runs[n]["failures"], runs[n]["failures"]
            wall[label].append((_loop_s(runs[count]) - _loop_s(runs[small])) / (count - small))
            cpu[label].append((runs[count]["_cpu_s"] - runs[small]["_cpu_s"]) / (count - small))
            render[label].append(runs[count]["timings"].get("render", 0.0) / count)
            if label == "default":
                stored = {Path(o["file"]).suffix for o in runs[count]["outputs"]}
                default_pictures = "maps" if stored == {".npy"} else "pictures"
    result: dict = {"images": count, "small": small, "default_pictures": default_pictures}
    result["bare_s_per_image"], result["bare_cpu_s_per_image"] = min(wall["bare"]), min(cpu["bare"])
    for label in modes:
        result[f"{label}_s_per_image"] = min(wall[label])
        result[f"{label}_cpu_s_per_image"] = min(cpu[label])
        result[f"{label}_render_s_per_image"] = min(render[label])
        result[f"{label}_ratio"] = min(wall["bare"]) / min(wall[label])
        result[f"{label}_cpu_ratio"] = min(cpu["bare"]) / min(cpu[label])
    return result


def _pace(ratio: float) -> str:
    if ratio <= 1.0:
        return "one drawing core keeps pace with the GPU"
    return f"one drawing core falls behind; {int(ratio) + 1} drawing workers (FEATVIS_DRAW_WORKERS) keep pace"


def markdown(pictures: dict | None, pace: dict | None) -> list[str]:
    """The two sections of benchmarks/RESULTS.md."""
    lines: list[str] = []
    if pictures:
        p = pictures
        fwd = p["forward_s_per_image"]
        lines += [
            f"## Storage and drawing: `output.pictures` on RetinaNet-R50 (random init), {p['input_hw'][1]}x"
            f"{p['input_hw'][0]} inputs ({p['network_input_hw'][1]}x{p['network_input_hw'][0]} network input), "
            f"{p['levels']} levels, warm cache, one drawing worker",
            "",
            "| measure | composite | maps | ratio | goal |",
            "|---|---|---|---|---|",
            f"| bytes written per image | {p['composite_bytes_per_image'] / 1e6:.2f} MB | "
            f"{p['maps_bytes_per_image'] / 1e6:.3f} MB | **{p['bytes_ratio']:.1f}x** | >= 10x |",
            f"| drawing time per image (`timings.render`) | {p['composite_render_s_per_image'] * 1e3:.0f} ms | "
            f"{p['maps_render_s_per_image'] * 1e3:.1f} ms | **{p['render_ratio']:.1f}x** | >= 5x |",
            "",
            f"GPU pace: a forward pass took {fwd:.2f} s per image here (CPU, the cold run). mmdet's metafile gives "
            f"{GPU_FORWARD_MS:.1f} ms per image for RetinaNet-R50 on a V100 (FP32, 800x1333; 31.7 ms in FP16). "
            f"Composite drawing, {p['composite_render_s_per_image'] * 1e3:.0f} ms per image on one core, is "
            f"{p['composite_render_s_per_image'] * 1e3 / GPU_FORWARD_MS:.1f}x that forward pass (the GPU would wait "
            f"for the drawing); maps, {p['maps_render_s_per_image'] * 1e3:.1f} ms, is "
            f"{p['maps_render_s_per_image'] * 1e3 / GPU_FORWARD_MS:.2f}x of it: "
            f"{_pace(p['maps_render_s_per_image'] * 1e3 / GPU_FORWARD_MS)}. 5000 images: "
            f"{p['composite_bytes_per_image'] * 5000 / 1e9:.1f} GB composite, "
            f"{p['maps_bytes_per_image'] * 5000 / 1e9:.2f} GB maps.",
            "",
        ]
    if pace:
        q = pace
        lines += [
            f"## Drawing pace: `experiment=multi_image`, demo detector, {q['images']} images of 640x480, `cache=off`",
            "",
            f"Marginal seconds per image ((loop of {q['images']} - loop of {q.get('small', 16)}) / "
            f"{q['images'] - q.get('small', 16)}, model build excluded, better of two interleaved runs) against a bare "
            "mmdet loop (`inference_detector` per image, after a warm-up image; seconds per image over all images).",
            "",
            "| run | s per image | ratio to the bare loop (goal >= 0.8x) | CPU s per image | CPU ratio | drawing per "
            "image (`timings.render`) |",
            "|---|---|---|---|---|---|",
            f"| bare mmdet loop | {q['bare_s_per_image']:.4f} | 1.00x | {q['bare_cpu_s_per_image']:.4f} | 1.00x | - |",
        ]
        for label, name in (("default", f"multi_image default ({q['default_pictures']})"), ("composite", "composite")):
            lines.append(
                f"| {name} | {q[f'{label}_s_per_image']:.4f} | **{q[f'{label}_ratio']:.2f}x** | "
                f"{q[f'{label}_cpu_s_per_image']:.4f} | {q[f'{label}_cpu_ratio']:.2f}x | "
                f"{q[f'{label}_render_s_per_image'] * 1e3:.1f} ms |"
            )
        lines += [
            "",
            "CPU seconds (user + system of each process, marginal as above) do not depend on what else shares the "
            "cores; wall-clock ratios on a loaded machine do (torch's threads wait on busy cores), so read them "
            "with the load average noted at the top.",
            "",
        ]
    return lines
