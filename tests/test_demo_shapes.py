"""The embedded demo: synthetic-shapes generator, training script (--quick) and the packaged tiny RetinaNet."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featvis_run.demo.shapes import (
    CLASSES,
    DEMO_SCENE_OBJECTS,
    make_demo_scene,
    make_scene,
    scene_seeds,
    write_coco_dataset,
    write_demo_scene,
)
from featvis_run.paths import PACKAGE_DIR

REPO = Path(__file__).resolve().parents[1]
ASSETS = PACKAGE_DIR / "assets"  # the package's own (the installed wheel's, when the tests run against one)
CKPT = ASSETS / "demo_shapes.pth"
DEMO_PNG = ASSETS / "demo_scene.png"
DEMO_JSON = ASSETS / "demo_scene.json"
CONFIG = REPO / "featvis_run" / "demo" / "demo_shapes_config.py"
TRAIN_SCRIPT = REPO / "scripts" / "train_demo_model.py"

#: Minimal inside/outside ratio of FPN activations asserted per level, P3..P7. Measured with the packaged
#: weights: 1.71, 1.84, 1.56, 2.20, 1.45. P7 (stride 128, a 4x5 grid on the 640x480 demo scene) stays below
#: 1.5: its map peaks on the 300 px circle but also responds around the 160 px square next to it, and the
#: bilinear upsampling of so coarse a grid blurs it over the neighbouring background.
MIN_LEVEL_RATIOS = (1.5, 1.5, 1.5, 1.5, 1.3)


# ------------------------------------------------------------------------------------------------ generator


def test_same_seed_gives_identical_scene():
    a, b = make_scene(7), make_scene(7)
    assert a.image.tobytes() == b.image.tobytes()
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_different_seeds_differ():
    a, b = make_scene(7), make_scene(8)
    assert a.image.tobytes() != b.image.tobytes()


def test_scene_types_and_readonly():
    s = make_scene(3, (200, 260))
    assert s.image.shape == (200, 260, 3) and s.image.dtype == np.uint8
    assert s.boxes.dtype == np.float32 and s.boxes.shape == (len(s.labels), 4)
    assert s.labels.dtype == np.int64 and len(s.labels) >= 1
    assert s.masks.shape == (len(s.labels), 200, 260) and s.masks.dtype == bool
    with pytest.raises(ValueError):
        s.image[0, 0, 0] = 1


def test_boxes_inside_image_and_tight():
    sizes = []
    for seed in range(40):
        s = make_scene(seed)
        h, w = s.image.shape[:2]
        for box, mask in zip(s.boxes, s.masks, strict=True):
            x1, y1, x2, y2 = box.astype(int)
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert np.array_equal(box, box.round())
            # every visible pixel is inside the box, and the box touches visible pixels on all four sides
            ys, xs = np.nonzero(mask)
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
            assert mask[y1:y2, x1].any() and mask[y1:y2, x2 - 1].any()
            assert mask[y1, x1:x2].any() and mask[y2 - 1, x1:x2].any()
            sizes.append(math.sqrt((x2 - x1) * (y2 - y1)))
        # visible masks do not overlap (occluded pixels belong to the object on top only)
        assert (s.masks.sum(0) <= 1).all()
    # object scales span every FPN level (stride 8 .. 128)
    assert min(sizes) < 16 and max(sizes) > 230


def test_demo_scene_layout():
    s = make_demo_scene()
    assert s.image.shape == (480, 640, 3)
    assert s.class_names == [name for name, *_ in DEMO_SCENE_OBJECTS]
    # circles are placed by centre and diameter: their tight boxes are known geometrically
    for (name, size, cx, cy), box in zip(DEMO_SCENE_OBJECTS, s.boxes, strict=True):
        if name == "circle":
            np.testing.assert_allclose(box, [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], atol=1.5)


def test_write_demo_scene_matches_packaged_asset(tmp_path):
    png, ann = write_demo_scene(tmp_path)
    meta = json.loads(ann.read_text())
    assert meta["classes"] == list(CLASSES) and len(meta["objects"]) == len(DEMO_SCENE_OBJECTS)
    assert DEMO_PNG.is_file() and DEMO_JSON.is_file(), "the packaged demo scene is missing"
    assert png.read_bytes() == DEMO_PNG.read_bytes()
    assert meta == json.loads(DEMO_JSON.read_text())


def test_coco_dataset_deterministic_and_loads_with_mmdet(tmp_path):
    from mmdet.datasets import CocoDataset

    a = write_coco_dataset(tmp_path / "a", 5, seed=11, size=(160, 200))
    b = write_coco_dataset(tmp_path / "b", 5, seed=11, size=(160, 200))
    assert a.read_bytes() == b.read_bytes()
    for png in sorted((tmp_path / "a" / "images").glob("*.png")):
        assert png.read_bytes() == (tmp_path / "b" / "images" / png.name).read_bytes()

    scenes = [make_scene(s, (160, 200)) for s in scene_seeds(11, 5)]
    ds = CocoDataset(
        data_root=str(tmp_path / "a"),
        ann_file="annotations.json",
        data_prefix=dict(img="images/"),
        metainfo=dict(classes=CLASSES),
        test_mode=True,
        pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)],
    )
    assert len(ds) == 5
    assert sum(len(ds.get_data_info(i)["instances"]) for i in range(len(ds))) == sum(len(s.boxes) for s in scenes)
    for i in (0, 4):
        item = ds[i]
        np.testing.assert_array_equal(item["img"], scenes[i].image)
        boxes = item["gt_bboxes"]  # HorizontalBoxes under mmdet's default scope, an array under mmcv's
        np.testing.assert_allclose(np.asarray(getattr(boxes, "tensor", boxes)), scenes[i].boxes)
        np.testing.assert_array_equal(item["gt_bboxes_labels"], scenes[i].labels)


# --------------------------------------------------------------------------------------------- training


@pytest.mark.slow
def test_train_script_quick(tmp_path):
    import torch

    out = tmp_path / "out" / "quick.pth"
    proc = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), "--quick", "--out", str(out), "--work-dir", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = torch.load(out, weights_only=True)
    assert set(ckpt) == {"state_dict", "meta"}
    assert ckpt["meta"]["dataset_meta"]["classes"] == list(CLASSES)
    assert ckpt["meta"]["config"] == "demo_shapes_config.py"
    assert isinstance(ckpt["meta"]["bbox_mAP_50"], float)
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values())
    assert any(k.startswith("neck.") for k in ckpt["state_dict"])
    metrics = json.loads((out.parent / "quick_metrics.json").read_text())
    assert metrics["train"]["iters"] == 4
    assert (out.parent / "demo_scene.png").exists() and (out.parent / "demo_scene.json").exists()
    assert not (tmp_path / "work" / "data").exists()  # generated images are cleaned up


# -------------------------------------------------------------------------------------- packaged model


@pytest.fixture(scope="module")
def demo_model():
    """(model, cfg, checkpoint) of the packaged demo model, weights loaded, in eval mode."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    cfg = Config.fromfile(str(CONFIG))
    model = MODELS.build(cfg.model)
    ckpt = torch.load(CKPT, weights_only=True)
    own = model.state_dict()
    assert set(ckpt["state_dict"]) == set(own), "checkpoint keys differ from the config model"
    assert all(ckpt["state_dict"][k].shape == v.shape for k, v in own.items())
    model.load_state_dict(ckpt["state_dict"], strict=True)
    model.eval()
    return model, cfg, ckpt


@pytest.fixture(scope="module")
def demo_run(demo_model):
    """Predictions and FPN outputs on the packaged demo scene."""
    import cv2
    import torch
    from mmcv.transforms import Compose

    model, cfg, _ = demo_model
    pipeline = [dict(t) for t in cfg.test_dataloader.dataset.pipeline if t["type"] != "LoadAnnotations"]
    pipeline[0] = dict(type="mmdet.LoadImageFromNDArray")
    img = cv2.imread(str(DEMO_PNG))
    data = Compose(pipeline)(dict(img=img, img_id=0))
    batch = dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]])
    feats = []
    handle = model.neck.register_forward_hook(lambda _m, _i, out: feats.extend(out))
    try:
        with torch.no_grad():
            result = model.test_step(batch)[0]
    finally:
        handle.remove()
    objects = json.loads(DEMO_JSON.read_text())["objects"]
    return result, feats, objects


@pytest.mark.slow
def test_checkpoint_plain_and_small(demo_model):
    _, _, ckpt = demo_model
    assert CKPT.stat().st_size <= 5 * 1024 * 1024
    meta = ckpt["meta"]
    assert meta["dataset_meta"]["classes"] == list(CLASSES)
    assert meta["config"] == "demo_shapes_config.py"
    assert meta["bbox_mAP_50"] >= 0.8, meta


@pytest.mark.slow
def test_detects_every_demo_scene_object(demo_run):
    import torch
    from mmdet.structures.bbox import bbox_overlaps

    result, _, objects = demo_run
    pred = result.pred_instances
    gt = torch.tensor([o["bbox"] for o in objects], dtype=torch.float32)
    ious = bbox_overlaps(gt, pred.bboxes)
    missed = []
    for i, obj in enumerate(objects):
        ok = (ious[i] > 0.5) & (pred.scores > 0.5) & (pred.labels == CLASSES.index(obj["label"]))
        if not bool(ok.any()):
            missed.append(obj)
    assert not missed, missed


def _anchor_sizes(cfg) -> list[float]:
    """Typical anchor size (geometric mean over the octave scales) of every level."""
    ag = cfg.model.bbox_head.anchor_generator
    spo = ag.scales_per_octave
    return [s * ag.octave_base_scale * 2 ** ((spo - 1) / (2 * spo)) for s in ag.strides]


def level_activation_ratios(feats, objects, anchor_sizes, img_shape, pad_shape) -> list[float]:
    """Per FPN level: mean |activation| inside the boxes of the objects of that level's scale / outside all boxes.

    Each object goes to the level whose typical anchor size is closest (in log scale) to its sqrt(box area),
    as RetinaNet's IoU assignment does. Channel-mean |activation| maps are upsampled to the padded input.
    """
    import torch.nn.functional as F

    h, w = img_shape
    boxes = np.array([o["bbox"] for o in objects])
    sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    level_of = np.abs(np.log(sizes[:, None]) - np.log(np.array(anchor_sizes)[None])).argmin(1)
    outside = np.ones((h, w), bool)
    for x1, y1, x2, y2 in boxes.round().astype(int):
        outside[y1:y2, x1:x2] = False
    ratios = []
    for lvl, feat in enumerate(feats):
        act = feat[0].abs().mean(0)[None, None]
        act = F.interpolate(act, size=pad_shape, mode="bilinear", align_corners=False)[0, 0, :h, :w].numpy()
        inside = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in boxes[level_of == lvl].round().astype(int):
            inside[y1:y2, x1:x2] = True
        assert inside.any(), f"no demo object at the scale of level {lvl}"
        ratios.append(float(act[inside].mean() / act[outside].mean()))
    return ratios


@pytest.mark.slow
def test_fpn_levels_light_up_on_objects_of_their_scale(demo_model, demo_run):
    _, cfg, _ = demo_model
    result, feats, objects = demo_run
    assert len(feats) == 5
    assert result.metainfo["scale_factor"] == (1.0, 1.0)  # demo scene is used at its own size
    ratios = level_activation_ratios(
        feats, objects, _anchor_sizes(cfg), result.metainfo["img_shape"], result.metainfo["batch_input_shape"]
    )
    print("FPN inside/outside |activation| ratios P3..P7:", [round(r, 2) for r in ratios])
    assert all(r > m for r, m in zip(ratios, MIN_LEVEL_RATIOS, strict=True)), ratios


def average_precision(scores: np.ndarray, hits: np.ndarray, positives: int) -> float:
    """VOC-style AP (area under the interpolated precision-recall curve) of detections ranked by score."""
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    recall = np.concatenate([[0.0], tp / positives, [1.0]])
    precision = np.concatenate([[1.0], tp / np.arange(1, len(tp) + 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at any higher recall
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], others[:, 0]), np.maximum(box[1], others[:, 1])
    x2, y2 = np.minimum(box[2], others[:, 2]), np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    return inter / (area + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]) - inter)


def test_average_precision_by_hand():
    # 2 objects; ranked detections: hit, miss, hit -> precision 1 at recall 0.5, 2/3 at recall 1
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision(np.array([0.9]), np.array([1]), 2) == pytest.approx(0.5)


@pytest.mark.slow
def test_held_out_map_at_iou_half_measured_here_not_read_from_the_training_metrics(demo_model):
    """The README's quality claim (mAP@0.5 0.956 with CocoMetric on 300 held-out images), checked on the first 16
    of the same held-out scenes with a plain VOC-style AP computed in this test (measured: 0.97; 0.96 on 40)."""
    import torch
    from mmcv.transforms import Compose

    model, cfg, _ = demo_model
    pipeline = [dict(t) for t in cfg.test_dataloader.dataset.pipeline if t["type"] != "LoadAnnotations"]
    pipeline[0] = dict(type="mmdet.LoadImageFromNDArray")
    pipeline = Compose(pipeline)
    per_class = {c: ([], [], 0) for c in range(len(CLASSES))}  # scores, hits, number of objects
    for seed in scene_seeds(0 + 1_000_003, 16):  # the training script's held-out seeds (train seed 0)
        scene = make_scene(seed, (480, 640), min_size=12, max_size=340)
        data = pipeline(dict(img=np.ascontiguousarray(scene.image), img_id=0))
        with torch.no_grad():
            pred = model.test_step(dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]))[0]
        boxes, scores = pred.pred_instances.bboxes.numpy(), pred.pred_instances.scores.numpy()
        labels = pred.pred_instances.labels.numpy()
        for c in per_class:
            gt = scene.boxes[scene.labels == c]
            taken = np.zeros(len(gt), bool)
            found, hits, count = per_class[c]
            for i in np.argsort(-scores[labels == c], kind="stable"):
                box, score = boxes[labels == c][i], scores[labels == c][i]
                ious = _iou(box, gt) if len(gt) else np.zeros(0)
                best = int(np.argmax(ious)) if len(gt) else -1
                hit = best >= 0 and ious[best] >= 0.5 and not taken[best]
                if hit:
                    taken[best] = True
                found.append(score)
                hits.append(hit)
            per_class[c] = (found, hits, count + len(gt))
    aps = [average_precision(np.array(s), np.array(h, float), n) for s, h, n in per_class.values()]
    print("held-out AP@0.5 per class:", [round(a, 3) for a in aps])
    assert np.mean(aps) >= 0.88, aps  # README: 0.956 (COCO's 101-point AP on 300 images)
