"""Embedded demo: a synthetic-shapes data generator and the tiny RetinaNet trained on it.

The trained weights live in ``featvis_run/assets/demo_shapes.pth`` and the model config in
``featvis_run/demo/demo_shapes_config.py``; ``scripts/train_demo_model.py`` reproduces both.
"""

from pathlib import Path

from .shapes import CLASSES, Scene, make_demo_scene, make_scene, write_coco_dataset, write_demo_scene

__all__ = [
    "CLASSES",
    "DEMO_CONFIG",
    "Scene",
    "make_demo_scene",
    "make_scene",
    "write_coco_dataset",
    "write_demo_scene",
]

#: Path of the demo model's mmdet config file.
DEMO_CONFIG = Path(__file__).with_name("demo_shapes_config.py")
