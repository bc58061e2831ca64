"""Screenshots of the report page's main views (``make report-screenshots``), from demo-model runs made offline.

Runs (model=demo_shapes, the demo scene): a single run with recorded features, a multi-image run, a diff of the
trained weights against a random init, three checkpoints (the trained weights blended with noise), and a sweep of
three reducers. Each run's index.html is opened from file:// in Debian's chromium (Playwright, no download) and
screenshotted into ``--out`` (default outputs/screenshots/); ``--docs`` copies the best ones into docs/img/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "featvis_run" / "assets"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = {"single": "report-single.png", "diff": "report-diff.png", "channels": "report-channels.png"}


def featvis(*args: str, multirun: bool = False) -> None:
    """Run the console script of this interpreter (offline; fails loudly)."""
    exe = Path(sys.executable).parent / "featvis-run"
    cmd = [str(exe), *(["-m"] if multirun else []), "model=demo_shapes", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if proc.returncode != 0:
        raise SystemExit(f"featvis-run {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def noisy_checkpoints(folder: Path, count: int = 3) -> list[Path]:
    """``epoch_1..count``: the demo weights blended with seeded noise, less each epoch (the last is exact)."""
    import torch

    ckpt = torch.load(ASSETS / "demo_shapes.pth", weights_only=True, map_location="cpu")
    gen = torch.Generator().manual_seed(0)
    paths = []
    for epoch in range(1, count + 1):
        share = 1.0 - epoch / count
        state = {
            k: (v + share * v.float().std().nan_to_num(0.0) * torch.randn(v.shape, generator=gen)).to(v.dtype)
            if v.is_floating_point() and v.dim() >= 2  # convolution and linear weights (norm statistics stay valid)
            else v
            for k, v in ckpt["state_dict"].items()
        }
        path = folder / f"epoch_{epoch}.pth"
        torch.save({"state_dict": state, "meta": ckpt["meta"]}, path)
        paths.append(path)
    return paths


def demo_images(folder: Path) -> list[Path]:
    """The demo scene, mirrored, and a 3:4 crop of it (another size: the maps' placement differs)."""
    folder.mkdir(parents=True, exist_ok=True)
    scene = cv2.imread(str(ASSETS / "demo_scene.png"))
    out = []
    for name, image in (("scene", scene), ("mirrored", scene[:, ::-1]), ("crop", scene[:, 80:440])):
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), np.ascontiguousarray(image))
        out.append(path)
    return out


def make_runs(root: Path, light: bool = False) -> dict[str, Path]:
    """The demo runs whose pages the screenshots (and the slow browser tests, ``light``: no multi-image run, two
    checkpoints, two sweep jobs) look at."""
    root.mkdir(parents=True, exist_ok=True)
    cache = f"cache.dir={root / 'cache'}"
    runs = {name: root / name for name in ("single", "multi", "diff", "checkpoints", "sweep")}
    featvis(f"output.dir={runs['single']}", cache, "output.save_arrays=both")
    if light:
        del runs["multi"]
    else:
        images = demo_images(root / "images")
        featvis(
            "experiment=multi_image",
            f"images={images[0].parent}",
            f"output.dir={runs['multi']}",
            cache,
            "output.save_arrays=maps",
        )
    featvis(
        "experiment=diff",
        "model@model_a=demo_shapes",
        "model@model_b=demo_shapes",
        "model_b.checkpoint=null",
        "model_b.seed=1",
        f"output.dir={runs['diff']}",
        cache,
        "output.save_arrays=maps",
    )
    ckpts = noisy_checkpoints(Path(tempfile.mkdtemp(dir=root)), 2 if light else 3)
    featvis(
        "experiment=checkpoints",
        f"checkpoints={ckpts[0].parent}",
        f"output.dir={runs['checkpoints']}",
        cache,
        "output.save_arrays=maps",
    )
    featvis(
        "reducer=squeeze_mean,pixel_wise_max" + ("" if light else ",select_max"),
        f"hydra.sweep.dir={runs['sweep']}",
        cache,
        "output.save_arrays=maps",
        multirun=True,
    )
    return runs


def screenshots(runs: dict[str, Path], out: Path) -> list[Path]:
    """One PNG per view, written into ``out``."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="featvis-shots-"),
            executable_path=os.environ.get("FEATVIS_CHROMIUM", "/usr/bin/chromium"),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 860},
        )

        def shot(name: str, run: Path, steps=(), full: bool = False, clip_selector: str | None = None) -> None:
            page = ctx.new_page()
            page.goto((run / "index.html").resolve().as_uri())
            page.wait_for_function("window.featvis && window.featvis.ready === true")
            page.wait_for_load_state("load")
            for step in steps:
                step(page)
            page.wait_for_timeout(250)
            target = out / f"{name}.png"
            if clip_selector:
                page.locator(clip_selector).first.screenshot(path=str(target))
            else:
                page.screenshot(path=str(target), full_page=full)
            shots.append(target)
            page.close()

        def hover(selector: str, fx: float = 0.45, fy: float = 0.55):
            def step(page):
                box = page.locator(selector).first.bounding_box()
                page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])

            return step

        shot("single", runs["single"], [hover(".panel .stack")])
        shot("multi", runs["multi"], [lambda pg: pg.select_option("#image", "crop"), hover(".panel .stack")])
        shot("diff", runs["diff"], [hover(".panel .stack", 0.3, 0.4)])
        shot("checkpoints", runs["checkpoints"], [lambda pg: pg.locator("#ckpt").fill("0"), hover(".panel .stack")])
        sweep_steps = [lambda pg: pg.locator("#jobs input[type=checkbox]").nth(2).check(), hover(".grid .stack")]
        shot("sweep", runs["sweep"], sweep_steps)
        shot(
            "channels",
            runs["single"],
            [lambda pg: pg.locator(".panel .stack").nth(1).click(), lambda pg: pg.select_option("#ch-size", "0")],
            clip_selector="#channels",
        )
        ctx.close()
    return shots


def docs_png(source: Path, target: Path, width: int = 1000) -> int:
    """A small copy of a screenshot for the docs: at most ``width`` wide, 256 colours; returns its size in bytes."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)
    return target.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "screenshots")
    parser.add_argument("--runs", type=Path, default=None, help="where the demo runs go (default: a temp folder)")
    parser.add_argument("--docs", action="store_true", help="also copy the best views into docs/img/")
    args = parser.parse_args()
    root = args.runs or Path(tempfile.mkdtemp(prefix="featvis-report-runs-"))
    if args.runs and root.exists():
        shutil.rmtree(root)
    shots = screenshots(make_runs(root), args.out)
    for s in shots:
        print(f"screenshot: {s}")
    if args.docs:
        docs = REPO / "docs" / "img"
        docs.mkdir(parents=True, exist_ok=True)
        for name, target in DOCS.items():
            size = docs_png(args.out / f"{name}.png", docs / target)
            print(f"docs: {docs / target} ({size // 1024} KB)")
    print(f"runs: {root}")


if __name__ == "__main__":
    main()
