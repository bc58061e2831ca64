"""Inputs and baselines for scripts/bench.py: a real-sized checkpoint, generated images, the bare mmdet loop, and
rendering against MMEngine's ``Visualizer.draw_featmap``."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

R50_CONFIG = "retinanet/retinanet_r50_fpn_2x_coco.py"

_BARE_LOOP = """
import sys, time
from pathlib import Path
import cv2
from mmdet.apis import inference_detector, init_detector
from mmengine.config import Config
{build}
paths = sorted(Path(sys.argv[1]).glob("*.png"))[: int(sys.argv[2]) if len(sys.argv) > 2 else None]
inference_detector(model, cv2.imread(str(paths[0])))  # warm-up, as featvis-run's first batch is not free either
started = time.perf_counter()
for path in paths:
    inference_detector(model, cv2.imread(str(path)))
print(len(paths) / (time.perf_counter() - started))
"""

_BUILD_DEMO = """
from featvis_run.demo import DEMO_CONFIG
from featvis_run.paths import DEMO_CHECKPOINT
model = init_detector(str(DEMO_CONFIG), str(DEMO_CHECKPOINT), device="cpu")
"""

_BUILD_R50 = """
import mmdet
cfg = Config.fromfile(str(Path(mmdet.__file__).parent / ".mim" / "configs" / {config!r}))
cfg.model.backbone.init_cfg = None
for step in cfg.test_dataloader.dataset.pipeline:
    if step["type"] == "Resize":
        step["scale"] = (320, 240)
    if step["type"] == "LoadAnnotations":
        cfg.test_dataloader.dataset.pipeline.remove(step)
model = init_detector(cfg, {checkpoint!r}, device="cpu")
"""


def bare_loop_script(model: str, checkpoint: str | None = None) -> str:
    """Python source of the bare loop (``inference_detector`` per image, images read in the loop; its arguments: the
    folder and optionally how many of its images); it prints images per second. ``model`` is ``demo`` or ``r50``
    (RetinaNet-R50 at 320x240 with ``checkpoint``)."""
    build = _BUILD_DEMO if model == "demo" else _BUILD_R50.format(config=R50_CONFIG, checkpoint=checkpoint)
    return _BARE_LOOP.format(build=build)


def make_r50_checkpoint(path: Path) -> Path:
    """Save a seeded random RetinaNet-R50 as a full-sized mmdet checkpoint (about 150 MB)."""
    import mmdet
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    cfg = Config.fromfile(str(Path(mmdet.__file__).parent / ".mim" / "configs" / R50_CONFIG))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({"state_dict": model.state_dict(), "meta": {"note": "featvis-run benchmark, random init"}}, path)
    return path


def make_images(folder: Path, count: int, size: tuple[int, int]) -> Path:
    """``count`` generated demo-style scenes of ``size`` (H, W) as PNG files in ``folder``."""
    import cv2

    from featvis_run.demo.shapes import make_scene

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        cv2.imwrite(str(folder / f"scene{i:03d}.png"), make_scene(1000 + i, size).image)
    return folder


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def render_vs_mmengine(image_path: Path, repeats: int = 5) -> dict:
    """Milliseconds to draw a topk=20 grid and a squeeze_mean overlay of RetinaNet-R50's P3 on the image."""
    import warnings

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

    source = FeatureSource(
        ModelConfig(name="retinanet_r50", mmdet_config=R50_CONFIG),
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

    def ours(reducer: str, opts: RenderOptions):
        return render_map(reduce_channels(crop_valid(feat, geom), reducer, 20), feat.shape[1:], geom, bgr, opts)

    cases = {
        "topk20_grid": (
            lambda: ours("none", grid_opts),
            lambda: Visualizer.draw_featmap(full, rgb, channel_reduction=None, topk=20, arrangement=(4, 5)),
        ),
        "squeeze_mean_overlay": (
            lambda: ours("squeeze_mean", RenderOptions()),
            lambda: Visualizer.draw_featmap(full, rgb, channel_reduction="squeeze_mean"),
        ),
    }
    warnings.filterwarnings("ignore")
    results: dict = {"map_shape": list(feat.shape), "image_hw": list(bgr.shape[:2])}
    for name, (fast, reference) in cases.items():
        fast()
        reference()  # warm up both (imports, matplotlib fonts)
        ours_ms, ref_ms = _median_ms(fast, repeats), _median_ms(reference, repeats)
        results[name] = {"featvis_ms": ours_ms, "mmengine_ms": ref_ms, "speedup": ref_ms / ours_ms}
    return results
