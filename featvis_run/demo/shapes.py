"""Deterministic synthetic detection scenes: circles, squares and triangles on cluttered backgrounds.

Everything here is numpy + OpenCV only (no torch), so the generator is cheap to import from tests and
from the CLI. A scene is fully determined by its integer seed and size: the same arguments always give
byte-identical images and annotations.

Object sizes are drawn log-uniformly from ~12 px up to ~90 % of the short image side (or a given maximum),
so that every FPN level of a RetinaNet (strides 8..128) gets objects of its scale. Objects may partially occlude each
other (later objects are drawn on top); placements that would hide too much of an earlier object are
rejected, and the annotated box of every object is the tight box of its *visible* pixels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "CLASSES",
    "DEMO_SCENE_OBJECTS",
    "DEMO_SCENE_SEED",
    "DEMO_SCENE_SIZE",
    "Scene",
    "make_demo_scene",
    "make_scene",
    "scene_seeds",
    "write_coco_dataset",
    "write_demo_scene",
]

CLASSES: tuple[str, ...] = ("circle", "square", "triangle")

#: Smallest object extent (px) drawn by :func:`make_scene`.
MIN_OBJECT_SIZE = 12
#: A new object is rejected if it would leave less than this fraction of an earlier object visible.
MIN_VISIBLE_FRACTION = 0.6
#: Objects whose visible fraction falls below this are not annotated (safety net; the placement rule
#: above normally prevents it).
DROP_VISIBLE_FRACTION = 0.5

#: Fixed seed, size (H, W) and object layout of the packaged demo scene (``assets/demo_scene.png``).
DEMO_SCENE_SEED = 2024
DEMO_SCENE_SIZE = (480, 640)
#: (class name, size px, centre x, centre y) of the demo scene's objects: one to three per FPN level of the
#: demo RetinaNet, from ~20 px (P3, stride 8) up to 300 px (P7, stride 128), with background in between.
DEMO_SCENE_OBJECTS: tuple[tuple[str, int, int, int], ...] = (
    ("circle", 300, 180, 300),
    ("square", 160, 540, 380),
    ("triangle", 90, 470, 100),
    ("circle", 76, 590, 230),
    ("square", 40, 400, 270),
    ("triangle", 48, 330, 60),
    ("circle", 36, 200, 60),
    ("circle", 20, 400, 420),
    ("square", 20, 80, 60),
    ("triangle", 24, 610, 30),
)


@dataclass(frozen=True)
class Scene:
    """One synthetic image with its annotations.

    Attributes:
        image: ``uint8`` BGR image, shape ``(H, W, 3)``.
        boxes: ``float32`` array ``(N, 4)`` of tight visible boxes, ``x1, y1, x2, y2`` in pixels
            (``x2``/``y2`` exclusive, i.e. a one-pixel object at column 5 spans ``5..6``).
        labels: ``int64`` array ``(N,)`` of indices into :data:`CLASSES`.
        seed: the seed the scene was generated from.
        masks: ``bool`` array ``(N, H, W)``: the visible pixels of every annotated object.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    seed: int
    masks: np.ndarray

    @property
    def class_names(self) -> list[str]:
        """Class name of every object, in box order."""
        return [CLASSES[int(i)] for i in self.labels]


# ----------------------------------------------------------------------------------------------------
# drawing helpers


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A random BGR colour (float32, 0..255) from HSV with moderate-to-high saturation and value."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(90, 255), rng.uniform(80, 255)]]], dtype=np.float32).astype(
        np.uint8
    )
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textured float32 background: blotchy colour noise, optional gradient, stripes and clutter lines."""
    gh, gw = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    base = _random_colour(rng) * rng.uniform(0.4, 1.0)
    blotches = rng.normal(0.0, rng.uniform(10, 45), size=(gh, gw, 3)).astype(np.float32)
    img = base + cv2.resize(blotches, (w, h), interpolation=cv2.INTER_CUBIC)

    if rng.random() < 0.5:  # linear gradient
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)[..., None]
        img += ramp * rng.uniform(-60, 60, size=3).astype(np.float32)

    if rng.random() < 0.5:  # sinusoidal stripes / checker texture
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        period = rng.uniform(6, 40)
        angle = rng.uniform(0, np.pi)
        wave = np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)
        if rng.random() < 0.4:
            wave = wave * np.sin(2 * np.pi * (-np.sin(angle) * xx + np.cos(angle) * yy) / period)
        img += wave[..., None] * rng.uniform(5, 30)

    for _ in range(int(rng.integers(0, 7))):  # thin clutter lines
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = tuple(float(c) for c in _random_colour(rng))
        cv2.line(img, p1, p2, colour, int(rng.integers(1, 3)), lineType=cv2.LINE_AA)
    return img


def _shape_mask(label: int, size: float, cx: float, cy: float, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Boolean mask of one shape whose (unclipped) extent is about ``size`` px, centred at (cx, cy)."""
    mask = np.zeros((h, w), np.uint8)
    shift = 4  # sub-pixel precision for cv2 drawing
    scale = 1 << shift
    if CLASSES[label] == "circle":
        cv2.circle(
            mask,
            (round(cx * scale), round(cy * scale)),
            round(size / 2 * scale),
            1,
            -1,
            lineType=cv2.LINE_8,
            shift=shift,
        )
    else:
        if CLASSES[label] == "square":
            theta = rng.uniform(0, np.pi / 2)
            side = size / (abs(np.cos(theta)) + abs(np.sin(theta)))
            angles = theta + np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
            radius = side / np.sqrt(2)
        else:  # triangle: jittered vertices on a circle of diameter `size`, random rotation
            theta = rng.uniform(0, 2 * np.pi)
            angles = theta + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
            radius = size / 2
        pts = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(pts * scale).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=shift)
    return mask.astype(bool)


def _paint_object(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Paint ``mask`` onto ``img`` in place with a colour that contrasts with what lies underneath."""
    under = img[mask].mean(axis=0)
    colour = _random_colour(rng)
    for _ in range(10):
        if np.linalg.norm(colour - under) >= 90:
            break
        colour = _random_colour(rng)
    else:
        colour = np.where(under > 127, rng.uniform(0, 60, 3), rng.uniform(195, 255, 3)).astype(np.float32)

    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    hh, ww = y1 - y0, x1 - x0
    yy, xx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * (xx / max(ww, 1) - 0.5) + np.sin(angle) * (yy / max(hh, 1) - 0.5)
    shade = 1.0 + rng.uniform(0.0, 0.35) * ramp[..., None]  # soft shading across the object
    patch = colour * shade
    if rng.random() < 0.3:  # fine speckle texture on the object itself
        patch = patch + rng.normal(0.0, rng.uniform(4, 14), size=patch.shape).astype(np.float32)
    sub = mask[y0:y1, x0:x1]
    if rng.random() < 0.35 and min(hh, ww) >= 10:  # darker/lighter outline band
        inner = cv2.erode(sub.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 3))).astype(
            bool
        )
        patch[sub & ~inner] *= rng.uniform(0.4, 1.4)
    region = img[y0:y1, x0:x1]
    region[sub] = patch[sub]


def _tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


# ----------------------------------------------------------------------------------------------------
# scenes


def _render(
    rng: np.random.Generator,
    size: tuple[int, int],
    plan: Sequence[tuple[int, float, float | None, float | None]],
    seed: int,
    max_tries: int = 30,
) -> Scene:
    """Render a scene from a plan of ``(label, size, cx, cy)`` (``None`` centre = random placement)."""
    h, w = size
    img = _background(rng, h, w)
    labels: list[int] = []
    areas: list[int] = []
    visible: list[np.ndarray] = []
    for label, obj_size, cx, cy in plan:
        fixed = cx is not None and cy is not None
        for _ in range(1 if fixed else max_tries):
            if fixed:
                x, y = float(cx), float(cy)
            else:
                half = obj_size / 2
                x = rng.uniform(half, w - half)
                y = rng.uniform(half, h - half)
            mask = _shape_mask(label, obj_size, x, y, rng, h, w)
            area = int(mask.sum())
            if area < 16:
                continue
            if all((v & ~mask).sum() >= MIN_VISIBLE_FRACTION * a for v, a in zip(visible, areas, strict=True)):
                break
        else:
            continue  # could not place this object without hiding another one: skip it
        visible = [v & ~mask for v in visible]
        visible.append(mask.copy())
        labels.append(label)
        areas.append(area)
        _paint_object(img, mask, rng)

    if rng.random() < 0.3:  # mild defocus
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.2))
    img += rng.normal(0.0, rng.uniform(2, 9), size=img.shape).astype(np.float32)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)

    boxes, keep_labels, keep_masks = [], [], []
    for v, a, label in zip(visible, areas, labels, strict=True):
        if v.sum() < DROP_VISIBLE_FRACTION * a:  # mostly occluded: not annotated
            continue
        boxes.append(_tight_box(v))
        keep_labels.append(label)
        keep_masks.append(v)
    return Scene(
        image=_readonly(image),
        boxes=_readonly(np.asarray(boxes, np.float32).reshape(-1, 4)),
        labels=_readonly(np.asarray(keep_labels, np.int64)),
        seed=seed,
        masks=_readonly(np.asarray(keep_masks, bool).reshape(-1, h, w)),
    )


def make_scene(
    seed: int,
    size: tuple[int, int] = (320, 320),
    *,
    max_objects: int = 8,
    min_size: int = MIN_OBJECT_SIZE,
    max_size: int | None = None,
) -> Scene:
    """Generate one random scene, fully determined by ``seed`` and the other arguments.

    Args:
        seed: any non-negative integer.
        size: image ``(H, W)`` in pixels.
        max_objects: upper bound on the number of objects (at least one is always drawn).
        min_size: smallest object extent in pixels.
        max_size: largest object extent; default 90 % of the short image side.

    Returns:
        The :class:`Scene`; its ``boxes`` are tight visible boxes in pixels.
    """
    h, w = size
    rng = np.random.default_rng(seed)
    max_size = int(0.9 * min(h, w)) if max_size is None else max_size
    n = int(rng.integers(1, max_objects + 1))
    sizes = np.exp(rng.uniform(np.log(min_size), np.log(max_size), n))
    labels = rng.integers(0, len(CLASSES), n)
    order = np.argsort(-sizes, kind="stable")  # large first: small objects end up on top
    plan = [(int(labels[i]), float(sizes[i]), None, None) for i in order]
    return _render(rng, (h, w), plan, seed)


def make_demo_scene(seed: int = DEMO_SCENE_SEED, size: tuple[int, int] = DEMO_SCENE_SIZE) -> Scene:
    """The packaged demo scene: a fixed layout (:data:`DEMO_SCENE_OBJECTS`) of objects of every scale."""
    rng = np.random.default_rng(seed)
    plan = [(CLASSES.index(name), float(s), float(cx), float(cy)) for name, s, cx, cy in DEMO_SCENE_OBJECTS]
    return _render(rng, size, plan, seed)


def scene_seeds(seed: int, num_images: int) -> list[int]:
    """Per-image seeds of a data set: independent streams for different base seeds."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(num_images, dtype=np.uint32)]


def _encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _annotation(ann_id: int, image_id: int, box: np.ndarray, label: int) -> dict:
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": int(label) + 1,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "area": (x2 - x1) * (y2 - y1),
        "iscrowd": 0,
    }


def write_coco_dataset(
    out_dir: str | Path, num_images: int, seed: int, size: tuple[int, int] = (320, 320), **scene_kwargs
) -> Path:
    """Write ``num_images`` scenes as PNGs plus a COCO ``annotations.json`` into ``out_dir``.

    Images go to ``out_dir/images/000000.png`` ...; the json's ``file_name`` is relative to
    ``out_dir/images``. Category ids are 1-based in :data:`CLASSES` order, so mmdet's ``CocoDataset``
    reads it with ``metainfo=dict(classes=CLASSES)``.

    Returns:
        Path of the written ``annotations.json``.
    """
    out_dir = Path(out_dir)
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, scene_seed in enumerate(scene_seeds(seed, num_images), start=1):
        scene = make_scene(scene_seed, size, **scene_kwargs)
        file_name = f"{image_id - 1:06d}.png"
        (img_dir / file_name).write_bytes(_encode_png(scene.image))
        h, w = scene.image.shape[:2]
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w, "seed": scene_seed})
        for box, label in zip(scene.boxes, scene.labels, strict=True):
            annotations.append(_annotation(len(annotations) + 1, image_id, box, int(label)))
    coco = {
        "info": {"description": "featvis_run synthetic shapes", "seed": seed},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)],
    }
    ann_path = out_dir / "annotations.json"
    ann_path.write_text(json.dumps(coco))
    return ann_path


def write_demo_scene(out_dir: str | Path, name: str = "demo_scene") -> tuple[Path, Path]:
    """Write the demo scene as ``<name>.png`` plus ``<name>.json`` (xyxy pixel boxes and class names).

    Returns:
        ``(png_path, json_path)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene = make_demo_scene()
    png_path = out_dir / f"{name}.png"
    json_path = out_dir / f"{name}.json"
    png_path.write_bytes(_encode_png(scene.image))
    h, w = scene.image.shape[:2]
    meta = {
        "image": png_path.name,
        "height": h,
        "width": w,
        "seed": scene.seed,
        "classes": list(CLASSES),
        "objects": [
            {"bbox": [round(float(v), 2) for v in box], "label": name_}
            for box, name_ in zip(scene.boxes, scene.class_names, strict=True)
        ],
    }
    json_path.write_text(json.dumps(meta, indent=2) + "\n")
    return png_path, json_path
