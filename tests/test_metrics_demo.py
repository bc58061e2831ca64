"""Explanation metrics end to end on the demo detector and held-out demo scenes (small: 2 scenes at 240 x 320, the
model at that scale, 4 steps): Grad-CAM beats the random baseline, and the metrics recompute from the run's files."""

import json
import subprocess

import cv2
import numpy as np
import pytest

from featvis_run.analysis.metrics import blurred_copy
from featvis_run.demo.shapes import write_coco_dataset

from .conftest import console_script

pytestmark = pytest.mark.slow

STEPS = 4
SCALE = "[320,240]"


def _iou(a, b):
    iw, ih = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union


def _centre_mask(hw, boxes):
    rows, cols = np.mgrid[0 : hw[0], 0 : hw[1]] + 0.5
    mask = np.zeros(hw, bool)
    for x1, y1, x2, y2 in boxes:
        mask |= (cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2)
    return mask


def test_gradcam_beats_the_random_baseline_and_its_metrics_recompute_from_the_saved_files(tmp_path):
    ann_file = write_coco_dataset(tmp_path / "scenes", 2, seed=1_000_003, size=(240, 320), min_size=12, max_size=170)
    out = tmp_path / "run"
    args = [
        "experiment=multi_image",
        f"images={tmp_path / 'scenes' / 'images'}",
        f"images.annotations={ann_file}",
        "reducer=gradcam",
        "analysis.metrics=true",
        f"analysis.steps={STEPS}",
        "analysis.baseline=random",
        "output.save_arrays=maps",
        "output.pictures=both",  # the pictures too (multi_image stores maps by default)
        f"model.test_scale={SCALE}",
        "cache=off",
        f"output.dir={out}",
    ]
    proc = subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"{4 * STEPS} forward passes per image" in proc.stdout and "metrics gradcam neck, 2 image(s)" in proc.stdout
    m = json.loads((out / "manifest.json").read_text())
    coco = json.loads(ann_file.read_text())
    images = {im["id"]: im for im in m["images"]}
    assert set(images) == {"000000", "000001"}

    # the ground truth is recorded (xywh -> xyxy) and drawn in magenta
    first = coco["images"][0]
    expected = [
        [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
        for a in coco["annotations"]
        if a["image_id"] == first["id"]
    ]
    np.testing.assert_allclose([b["bbox"] for b in images["000000"]["annotations"]["boxes"]], expected)
    picture = cv2.imread(str(out / "000000" / "neck" / "p3.png"))
    assert np.all(picture == (255, 0, 255), axis=-1).sum() > 50

    # Grad-CAM against the random map, on the mean over the scenes
    run = m["metrics"]
    assert run["images"] == 2 and run["steps"] == STEPS
    assert run["deletion_auc"] < run["random"]["deletion_auc"], run
    assert run["insertion_auc"] > run["random"]["insertion_auc"], run

    # pointing game and energy recomputed from the saved map and the annotations alone
    for image_id, im in images.items():
        metrics, explained = im["metrics"], im["explained"]["detections"]
        h, w = im["size_hw"]
        saved = np.load(out / metrics["map_file"])
        sal = np.maximum(cv2.resize(saved, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float64), 0)
        classes = {d["class"] for d in explained}
        boxes = [b["bbox"] for b in im["annotations"]["boxes"] if b["label"] in classes]
        mask = _centre_mask((h, w), boxes)
        assert metrics["boxes"] == "annotations"
        assert metrics["pointing_game"] == int(mask.reshape(-1)[np.argmax(sal)]), image_id
        assert metrics["energy_in_boxes"] == pytest.approx(sal[mask].sum() / sal.sum(), rel=1e-9), image_id
        assert metrics["deletion_auc"] == pytest.approx(np.trapezoid(metrics["deletion_curve"], dx=1 / STEPS), abs=1e-5)

    # the deletion curve recomputed with the model from the saved map: pixels in decreasing order, blurred
    from featvis_run.models.registry import build_model, run_batch
    from featvis_run.schema import ModelConfig

    im = images["000000"]
    image = cv2.imread(im["path"])
    h, w = im["size_hw"]
    sal = np.maximum(cv2.resize(np.load(out / im["metrics"]["map_file"]), (w, h)).astype(np.float64), 0)
    order = np.argsort(-sal.reshape(-1), kind="stable")
    blurred = blurred_copy(image).reshape(h * w, 3)
    perturbed = []
    for k in range(1, STEPS + 1):
        flat = image.reshape(h * w, 3).copy()
        flat[order[: k * h * w // STEPS]] = blurred[order[: k * h * w // STEPS]]
        perturbed.append(flat.reshape(h, w, 3))
    mc = ModelConfig(
        name="demo_shapes",
        mmdet_config="pkg://featvis_run/demo/demo_shapes_config.py",
        checkpoint="pkg://featvis_run/assets/demo_shapes.pth",
        test_scale=[320, 240],
    )
    built, _ = build_model(mc)
    explained = im["explained"]["detections"]
    unperturbed = sum(d["score"] for d in explained)
    curve = [1.0]
    for picture in perturbed:
        (result,) = run_batch(built, [picture])
        dets = result.predictions
        total = 0.0
        for d in explained:
            same = [
                (_iou(d["box"], box), float(s))
                for box, s, lab in zip(dets.boxes, dets.scores, dets.labels, strict=True)
                if dets.class_names[lab] == d["class"]
            ]
            best = max(same, default=(0.0, 0.0))
            total += best[1] if best[0] >= 0.5 else 0.0
        curve.append(total / unperturbed)
    assert curve == pytest.approx(im["metrics"]["deletion_curve"], abs=1e-4)
