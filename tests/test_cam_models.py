"""Grad-CAM with real mmdet models: traced logits, the demo detector's maps on the demo scene, and the CLI."""

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from featvis_run.maps.targets import parse_target
from featvis_run.models.pool import ModelPool
from featvis_run.models.registry import build_model, explain_batch
from featvis_run.schema import ModelConfig

from .conftest import console_script

pytestmark = pytest.mark.slow

ALL_SCORES = 'model.cfg_options=["model.test_cfg.score_thr=0.0"]'


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cwd = cwd or Path(tempfile.mkdtemp(prefix="featvis-cam-"))
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=900, cwd=cwd)


def test_traced_logits_are_the_logits_of_the_kept_detections(tiny_config, scene_image):
    import cv2

    mc = ModelConfig(name="tiny", mmdet_config=str(tiny_config), cfg_options=["model.test_cfg.score_thr=0.0"])
    built, _ = build_model(mc, ModelPool())
    image = cv2.imread(str(scene_image))
    batch = explain_batch(built, [image, image[:, ::-1].copy()], parse_target("all"), 0.0)
    scores = np.concatenate([r.predictions.scores for r in batch.results]).astype(np.float64)
    assert len(scores) > 2
    # RetinaNet scores are sigmoid(logit): the explained score is the sum of their inverse sigmoids
    expected = np.log(scores / (1 - scores)).sum()
    assert float(batch.score.detach()) == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_two_stage_faster_rcnn_cams_reach_the_neck_through_roialign(scene_image):
    import cv2

    from featvis_run.models.cam_source import FUSED, CamSource
    from featvis_run.schema import RecorderConfig
    from featvis_run.store.cache import ActivationCache
    from featvis_run.store.images import InputImage
    from featvis_run.timing import Timer

    options = [
        "model.backbone.depth=18",
        "model.neck.in_channels=[64,128,256,512]",
        "model.test_cfg.rcnn.score_thr=0.0",
    ]
    mc = ModelConfig(
        name="frcnn",
        mmdet_config="faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
        test_scale=[256, 160],
        cfg_options=options,
    )
    recorder = RecorderConfig(
        name="fpn", recorders={"neck": {"type": "module_outputs", "source": "neck", "level_prefix": "p"}}
    )
    source = CamSource(mc, recorder, ActivationCache(None), Timer(), parse_target("top"), 0.0, pool=ModelPool())
    image = InputImage("scene", scene_image, cv2.imread(str(scene_image)), "x")
    (item,) = source.features([image])
    levels = [k.level for k in item.features]
    assert levels == ["p2", "p3", "p4", "p5", "p6", FUSED]
    assert any(np.nanmax(item.features[k]) > 0 for k in item.features if k.level != FUSED)
    assert np.nanmax(item.features[next(k for k in item.features if k.level == "p6")]) == 0  # RPN only
    assert len(item.predictions.scores) == 1


def test_demo_detector_class_targets_point_at_their_shapes():
    from featvis_run.demo.cam_check import measure_demo_scene

    ratios = measure_demo_scene(("circle", "square"))
    for name, r in ratios.items():
        assert r["vs_background"] >= 2.0, (name, r)
        assert r["vs_others"] >= 1.5, (name, r)


def test_cli_gradcam_writes_every_level_and_fused_map_and_records_the_target(tiny_config, scene_image, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = [
        f"image={scene_image}",
        "model=mmdet",
        f"model.mmdet_config={tiny_config}",
        ALL_SCORES,
        f"cache.dir={cache}",
    ]
    proc = run_cli(*common, "reducer=gradcam", "target=det:1", f"output.dir={out}")
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == sorted([f"scene/neck/p{i}.png" for i in range(3, 8)] + ["scene/neck/fused.png"])
    m = json.loads((out / "manifest.json").read_text())
    explained = m["images"][0]["explained"]
    assert explained["target"] == "det:1" and len(explained["detections"]) == 1
    det = explained["detections"][0]
    assert det["class"] in ("a", "b", "c") and 0 <= det["score"] <= 1 and len(det["box"]) == 4
    assert {o["reducer"] for o in m["outputs"]} == {"gradcam"} and m["forward_passes"] == 1
    assert any("RANDOM INIT" in n for n in m["notes"])
    # the same target again: the CAMs come from the cache; another target runs the model
    again = run_cli(*common, "reducer=gradcam", "target=det:1", f"output.dir={tmp_path / 'again'}")
    assert (
        again.returncode == 0 and json.loads((tmp_path / "again" / "manifest.json").read_text())["forward_passes"] == 0
    )
    other = run_cli(*common, "reducer=gradcam", "target=det:0", f"output.dir={tmp_path / 'other'}")
    assert other.returncode == 0, other.stderr
    assert json.loads((tmp_path / "other" / "manifest.json").read_text())["forward_passes"] == 1
    # a target that matches nothing: one line listing what exists, exit 2
    bad = run_cli(*common, "reducer=gradcam", "target=det:100000", f"output.dir={tmp_path / 'bad'}")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "det:0 to det:" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    zebra = run_cli(*common, "reducer=gradcam", "target=class:zebra", f"output.dir={tmp_path / 'zebra'}")
    assert zebra.returncode == 2 and "its classes: a, b, c" in zebra.stderr and "Traceback" not in zebra.stderr


def test_cli_sweep_over_gradcam_and_eigencam_and_multi_image(tiny_config, scene_image, tmp_path):
    import cv2

    common = [f"image={scene_image}", "model=mmdet", f"model.mmdet_config={tiny_config}", ALL_SCORES, "cache=off"]
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", *common, "reducer=gradcam,eigencam", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["jobs"] == 2 and summary["failed"] == 0, summary
    (gradcam,) = sweep.glob("0_*reducer=gradcam")
    (eigencam,) = sweep.glob("1_*reducer=eigencam")
    assert (gradcam / "scene" / "neck" / "fused.png").is_file()
    assert (eigencam / "scene" / "neck" / "p3.png").is_file() and not (
        eigencam / "scene" / "neck" / "fused.png"
    ).exists()
    out, flipped = tmp_path / "multi", tmp_path / "flipped.png"
    cv2.imwrite(str(flipped), cv2.imread(str(scene_image))[:, ::-1])
    multi = run_cli(
        *common[1:],
        "experiment=multi_image",
        f"images=[{scene_image},{flipped}]",
        "reducer=gradcam",
        "target=all",
        "output.pred_score_thr=0.0",
        "output.pictures=both",  # the pictures and contact sheets too (multi_image stores maps by default)
        f"output.dir={out}",
    )
    assert multi.returncode == 0, multi.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["images"]) == 2 and all(i["explained"]["target"] == "all" for i in m["images"])
    assert (out / "contact" / "neck" / "fused.png").is_file()
    diff = run_cli(
        "experiment=diff",
        "model@model_a=demo_shapes",
        "model@model_b=demo_shapes",
        "reducer=gradcam",
        f"output.dir={tmp_path / 'diff'}",
    )
    assert diff.returncode == 2 and "reducer=eigencam" in diff.stderr and "Traceback" not in diff.stderr


R18 = ["model.backbone.depth=18", "model.neck.in_channels=[64,128,256,512]", "model.test_cfg.score_thr=0.0"]


YOLOX_ALL = ["model.test_cfg.score_thr=0.0"]


@pytest.mark.parametrize(
    ("config", "options", "exact"),
    [
        ("gfl/gfl_r50_fpn_1x_coco.py", R18, True),  # score = sigmoid(logit), through GFLHead's own post-processing
        ("fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py", R18, False),  # score = sigmoid(logit) * sigmoid(centerness)
        ("atss/atss_r50_fpn_1x_coco.py", R18, False),
        ("yolox/yolox_s_8xb8-300e_coco.py", YOLOX_ALL, False),  # score = sigmoid(logit) * sigmoid(objectness)
    ],
)
def test_dense_heads_with_own_or_score_factor_post_processing_are_traced(config, options, exact, scene_image):
    import cv2

    mc = ModelConfig(name="m", mmdet_config=config, test_scale=[256, 160], cfg_options=options)
    built, _ = build_model(mc, ModelPool())
    image = cv2.imread(str(scene_image))
    for i in range(3):
        batch = explain_batch(built, [image], parse_target(f"det:{i}"), 0.0)
        score = float(batch.results[0].predictions.scores[0])
        traced = 1 / (1 + np.exp(-float(batch.score.detach())))
        if exact:
            assert traced == pytest.approx(score, rel=1e-4)
        else:  # the centerness / objectness factor is below 1
            assert traced >= score - 1e-6


def test_batched_cams_equal_one_by_one_for_images_of_different_sizes(tiny_config):
    from featvis_run.maps.geometry import crop_valid
    from featvis_run.models.cam_source import CamSource
    from featvis_run.schema import RecorderConfig
    from featvis_run.store.cache import ActivationCache
    from featvis_run.store.images import InputImage
    from featvis_run.timing import Timer

    mc = ModelConfig(
        name="tiny", mmdet_config=str(tiny_config), test_scale=[160, 160], cfg_options=["model.test_cfg.score_thr=0.0"]
    )
    recorder = RecorderConfig(name="fpn", recorders={"neck": {"source": "neck", "level_prefix": "p"}})
    source = CamSource(mc, recorder, ActivationCache(None), Timer(), parse_target("top"), 0.0, pool=ModelPool())
    rng = np.random.default_rng(0)
    images = [
        InputImage(f"im{i}", Path(f"im{i}.png"), rng.integers(0, 255, hw, dtype=np.uint8), str(i))
        for i, hw in enumerate([(90, 160, 3), (160, 70, 3)])
    ]
    batched = source.features(images)
    singles = [source.features([im])[0] for im in images]
    assert source.forward_passes == 3
    for one, many in zip(singles, batched, strict=True):
        np.testing.assert_allclose(many.predictions.boxes, one.predictions.boxes, rtol=1e-4, atol=1e-3)
        for key, maps in one.features.items():
            alone = crop_valid(maps, one.geometry)
            together = crop_valid(many.features[key], many.geometry)
            assert alone.shape == together.shape, key
            np.testing.assert_allclose(together, alone, rtol=1e-3, atol=1e-3 * float(np.abs(alone).max()))


def test_an_unsupported_architecture_is_one_line_naming_what_is_supported():
    import torch

    from featvis_run.errors import ModelError
    from featvis_run.models.mmdet_explain import detection_logits

    class Segmentor(torch.nn.Module):
        pass

    with pytest.raises(ModelError, match="Segmentor is neither") as err:
        detection_logits(Segmentor(), {"inputs": torch.zeros(1, 3, 4, 4)})
    assert "\n" not in str(err.value) and "Faster/Mask R-CNN" in str(err.value)
