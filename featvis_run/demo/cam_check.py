"""Does Grad-CAM point at the right shapes? The fused map of ``target=class:<name>`` on the demo scene, measured
against the scene's annotated boxes (``scripts/measure_cam.py`` prints it; ``tests/test_cam_demo.py`` checks it).

Concentration ratios of a class: the fused map's mean inside that class's boxes over its mean on the background
(outside every box), and over its mean inside the other classes' boxes (outside the class's own).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["concentration", "demo_objects", "fused_on_image", "measure_demo_scene"]

_DEMO = {
    "mmdet_config": "pkg://featvis_run/demo/demo_shapes_config.py",
    "checkpoint": "pkg://featvis_run/assets/demo_shapes.pth",
}


def demo_objects() -> list[tuple[tuple[float, float, float, float], str]]:
    """The demo scene's annotated (x1, y1, x2, y2) boxes and class names."""
    from featvis_run.paths import resolve_package_path

    data = json.loads(resolve_package_path("pkg://featvis_run/assets/demo_scene.json").read_text())
    return [(tuple(float(v) for v in o["bbox"]), str(o["label"])) for o in data["objects"]]


def _mask(hw: tuple[int, int], boxes: Sequence[tuple[float, float, float, float]]) -> np.ndarray:
    mask = np.zeros(hw, bool)
    for x1, y1, x2, y2 in boxes:
        mask[max(0, int(round(y1))) : int(round(y2)), max(0, int(round(x1))) : int(round(x2))] = True
    return mask


def concentration(
    fused: np.ndarray, objects: Sequence[tuple[tuple[float, float, float, float], str]], name: str
) -> dict[str, float]:
    """Means of a (H, W) map (original image pixels) inside ``name``'s boxes, on the background and inside the
    other classes' boxes, and the two ratios."""
    own = _mask(fused.shape, [b for b, label in objects if label == name])
    anything = _mask(fused.shape, [b for b, _ in objects])
    others = _mask(fused.shape, [b for b, label in objects if label != name]) & ~own
    inside, background, other = (float(fused[m].mean()) for m in (own, ~anything, others))
    tiny = 1e-12
    return {
        "inside": inside,
        "background": background,
        "others": other,
        "vs_background": inside / max(background, tiny),
        "vs_others": inside / max(other, tiny),
    }


def fused_on_image(fused: np.ndarray, geometry: Any) -> np.ndarray:
    """A (1, H_in, W_in) fused map laid on the original image, (H, W), as the overlay draws it."""
    from featvis_run.maps.geometry import crop_valid, upsample_to_canvas

    return upsample_to_canvas(crop_valid(fused, geometry)[0], fused.shape[-2:], geometry, geometry.ori_hw)


def measure_demo_scene(classes: Sequence[str] = ("circle", "square", "triangle")) -> dict[str, dict[str, float]]:
    """The concentration ratios of ``target=class:<name>`` for each class, with the shipped demo detector on the
    demo scene (layer ``neck``, FPN P3-P7; cache off)."""
    from featvis_run.maps.targets import parse_target
    from featvis_run.models.cam_source import FUSED, CamSource
    from featvis_run.recording.levels import LevelKey
    from featvis_run.schema import ModelConfig, RecorderConfig
    from featvis_run.store.cache import ActivationCache
    from featvis_run.store.images import InputImage, demo_image_path, read_image
    from featvis_run.timing import Timer

    model = ModelConfig(name="demo_shapes", **_DEMO)
    recorder = RecorderConfig(
        name="fpn", recorders={"neck": {"type": "module_outputs", "source": "neck", "level_prefix": "p"}}
    )
    array, sha = read_image(demo_image_path())
    image = InputImage("demo_scene", demo_image_path(), array, sha)
    objects = demo_objects()
    out = {}
    for name in classes:
        source = CamSource(model, recorder, ActivationCache(None), Timer(), parse_target(f"class:{name}"), 0.3)
        (item,) = source.features([image])
        fused = fused_on_image(item.features[LevelKey("neck", FUSED)], item.geometry)
        out[name] = concentration(fused, objects, name)
    return out
