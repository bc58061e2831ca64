"""The model zoo matrix: the shipped recorder presets on real mmdet configs of every family, random init, small scale.

Each model is built once (one pool per module) and recorded with ``recorder=fpn``, ``recorder=backbone`` and, for
DETR-family models, ``recorder=encoder``, as composed from ``conf/``. The expected level names and grid sizes are
worked out by hand: the 480 x 640 demo scene resized to fit 320 x 320 is 240 x 320; mmdet pads it to a multiple of
32 (256 x 320), so a stride-2^k level is ceil(256 / 2^k) x ceil(320 / 2^k). DETR-family models do not pad (240 x 320).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from featvis_run.errors import RecordingError
from featvis_run.models.pool import ModelPool
from featvis_run.models.source import FeatureSource
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import ModelConfig, RecorderConfig
from featvis_run.store.cache import ActivationCache
from featvis_run.store.images import InputImage, demo_image_path
from featvis_run.timing import Timer

from .test_config import _compose

pytestmark = pytest.mark.slow

SCALE = [320, 320]


def grid(input_hw: tuple[int, int], k: int) -> tuple[int, int]:
    return math.ceil(input_hw[0] / 2**k), math.ceil(input_hw[1] / 2**k)


PADDED, DETR_IN = (256, 320), (240, 320)
P2_P6 = {f"p{k}": grid(PADDED, k) for k in range(2, 7)}
P3_P7 = {f"p{k}": grid(PADDED, k) for k in range(3, 8)}
P3_P5 = {f"p{k}": grid(PADDED, k) for k in range(3, 6)}
C2_C5 = {f"c{k}": grid(PADDED, k) for k in range(2, 6)}
C3_C5 = {f"c{k}": grid(PADDED, k) for k in range(3, 6)}
SQUARE = (320, 320)  # YOLO-style pipelines pad to a square
SQ_P3_P5 = {f"p{k}": grid(SQUARE, k) for k in range(3, 6)}
SQ_C3_C5 = {f"c{k}": grid(SQUARE, k) for k in range(3, 6)}

# config -> (family, fpn levels, backbone levels, encoder levels or None)
ZOO = {
    "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py": ("two-stage", P2_P6, C2_C5, None),
    "mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py": ("two-stage + masks", P2_P6, C2_C5, None),
    "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py": ("dense one-stage", P3_P7, C2_C5, None),
    "atss/atss_r50_fpn_1x_coco.py": ("dense one-stage", P3_P7, C2_C5, None),
    "yolox/yolox_s_8xb8-300e_coco.py": ("YOLO-style", SQ_P3_P5, SQ_C3_C5, None),
    "rtmdet/rtmdet_tiny_8xb32-300e_coco.py": ("YOLO-style", SQ_P3_P5, SQ_C3_C5, None),
    "yolo/yolov3_d53_8xb8-ms-608-273e_coco.py": ("YOLO-style, coarse-first neck", P3_P5, C3_C5, None),
    "yolof/yolof_r50-c5_8xb8-1x_coco.py": ("single level", {"p5": grid(PADDED, 5)}, {"c5": grid(PADDED, 5)}, None),
    "ssd/ssd300_coco.py": (
        "SSD (strides 8 .. 320)",
        {"p3": (40, 40), "p4": (20, 20), "p5": (10, 10), "p6": (5, 5), "p7": (3, 3), "p8": (1, 1)},
        {"c3": (40, 40), "c4": (20, 20)},
        None,
    ),
    "detr/detr_r50_8xb2-150e_coco.py": ("DETR", {"p5": (8, 10)}, {"c5": (8, 10)}, {"p5": (8, 10)}),
    "deformable_detr/deformable-detr_r50_16xb2-50e_coco.py": (
        "DETR, multi-level",
        {f"p{k}": grid(DETR_IN, k) for k in range(3, 7)},
        {f"c{k}": grid(DETR_IN, k) for k in range(3, 6)},
        {f"p{k}": grid(DETR_IN, k) for k in range(3, 7)},
    ),
    "conditional_detr/conditional-detr_r50_8xb2-50e_coco.py": (
        "Conditional DETR",
        {"p5": (8, 10)},
        {"c5": (8, 10)},
        {"p5": (8, 10)},
    ),
    "dab_detr/dab-detr_r50_8xb2-50e_coco.py": ("DAB-DETR", {"p5": (8, 10)}, {"c5": (8, 10)}, {"p5": (8, 10)}),
    "dino/dino-4scale_r50_8xb2-12e_coco.py": (
        "DINO",
        {f"p{k}": grid(DETR_IN, k) for k in range(3, 7)},
        {f"c{k}": grid(DETR_IN, k) for k in range(3, 6)},
        {f"p{k}": grid(DETR_IN, k) for k in range(3, 7)},
    ),
    "swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py": ("Swin", P3_P7, C3_C5, None),
    "efficientnet/retinanet_effb3_fpn_8xb4-crop896-1x_coco.py": ("EfficientNet", P3_P7, C3_C5, None),
    "regnet/retinanet_regnetx-800MF_fpn_1x_coco.py": ("RegNet", P3_P7, C2_C5, None),
    "centernet/centernet_r18_8xb16-crop512-140e_coco.py": (
        "CenterNet (image centred, no resize)",
        {"p2": (128, 168)},
        {f"c{k}": grid((512, 672), k) for k in range(2, 6)},
        None,
    ),
}


@pytest.fixture(scope="module")
def pool() -> ModelPool:
    return ModelPool(keep=1)


@pytest.fixture(scope="module")
def scene() -> InputImage:
    path = demo_image_path()
    return InputImage("demo_scene", path, cv2.imread(str(path)), "demo")


def recorder(option: str) -> RecorderConfig:
    return _compose(f"recorder={option}").recorder


def record(config: str, option: str, pool: ModelPool, scene: InputImage):
    mc = ModelConfig(name=Path(config).stem, mmdet_config=config, test_scale=SCALE)
    source = FeatureSource(mc, recorder(option), ActivationCache(None), Timer(), pool=pool)
    (item,) = source.features([scene])
    return item


@pytest.mark.parametrize("config", list(ZOO))
def test_presets_name_every_level_by_stride(config, pool, scene):
    family, fpn, backbone, encoder = ZOO[config]
    started = time.perf_counter()
    for option, expected in (("fpn", fpn), ("backbone", backbone), ("encoder", encoder)):
        if expected is None:
            continue
        item = record(config, option, pool, scene)
        layer = {"fpn": "neck", "backbone": "backbone", "encoder": "encoder"}[option]
        got = {k.level: tuple(v.shape[-2:]) for k, v in item.features.items()}
        assert got == expected, (family, option)
        assert list(got) == list(expected)  # fine to coarse
        assert all(k.layer == layer for k in item.features)
        assert all(np.isfinite(v).any() for v in item.features.values())
        assert np.isfinite(item.predictions.boxes).all()
    print(f"{config}: {time.perf_counter() - started:.1f} s")


def test_yolov3_infinite_boxes_are_dropped_with_a_note(pool, scene):
    item = record("yolo/yolov3_d53_8xb8-ms-608-273e_coco.py", "fpn", pool, scene)
    assert np.isfinite(item.predictions.boxes).all() and np.isfinite(item.predictions.scores).all()
    assert any("non-finite boxes" in n for n in item.notes)


def test_swin_stage_and_block_tokens_become_maps(pool, scene):
    rec = RecorderConfig(
        name="custom",
        recorders={"stage": {"source": "backbone.stages.1"}, "block": {"source": "backbone.stages.1.blocks.0"}},
        mappings={"stage_out": {"recorder": "stage", "data_idx": 2}},
    )
    mc = ModelConfig(name="swin", mmdet_config="swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py", test_scale=SCALE)
    (item,) = FeatureSource(mc, rec, ActivationCache(None), Timer(), pool=pool).features([scene])
    # stage 1 of Swin-T works at stride 8 with 192 channels; its output is also downsampled to stride 16 (384)
    assert item.features[LevelKey("stage", "stage_out")].shape == (192, 32, 40)  # (x_out, out_hw) of the stage
    assert item.features[LevelKey("block", "out")].shape == (192, 32, 40)  # bare (1, 1280, 192) tokens
    stage_levels = {k.level: v.shape for k, v in item.features.items() if k.layer == "stage"}
    assert stage_levels == {"stage_out": (192, 32, 40)}  # the mapping replaces the recorder's own levels


def test_tokens_with_no_fitting_grid_are_refused(pool, scene):
    rec = RecorderConfig(name="custom", recorders={"q": {"source": "decoder.layers.0"}})
    mc = ModelConfig(name="detr", mmdet_config="detr/detr_r50_8xb2-150e_coco.py", test_scale=SCALE)
    with pytest.raises(RecordingError, match=r"tokens of shape \(1, 100, 256\).*grid: \[H, W\]"):
        FeatureSource(mc, rec, ActivationCache(None), Timer(), pool=pool).features([scene])


def test_no_neck_and_no_encoder_are_one_line_errors(pool, scene):
    m2f = "mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py"  # also loads panoptic annotations
    with pytest.raises(RecordingError, match="Mask2Former has none.*recorder=backbone"):
        record(m2f, "fpn", pool, scene)
    item = record(m2f, "backbone", pool, scene)
    assert [k.level for k in item.features] == list(C2_C5)
    # the encoder preset on a model without a DETR encoder points at what it does have, never back at fpn
    with pytest.raises(RecordingError, match="has no pre_transformer") as refused:
        record(m2f, "encoder", pool, scene)
    assert "recorder=fpn" not in str(refused.value) and "recorder=backbone" in str(refused.value)
    assert "source:panoptic_head.pixel_decoder" in str(refused.value)


def test_a_failing_head_keeps_the_maps_recorded_before_it(tiny_config, scene, monkeypatch):
    from mmdet.models.dense_heads import RetinaHead

    def broken(*args, **kwargs):
        raise RuntimeError("post-processing exploded")

    monkeypatch.setattr(RetinaHead, "predict_by_feat", broken)
    mc = ModelConfig(name="tiny", mmdet_config=str(tiny_config))
    source = FeatureSource(mc, recorder("fpn"), ActivationCache(None), Timer(), pool=ModelPool())
    (item,) = source.features([scene])
    assert [k.level for k in item.features] == ["p3", "p4", "p5", "p6", "p7"]
    assert item.predictions is None  # no predictions, not an empty list of them
    assert item.notes == (
        "the model failed after its inputs were prepared (RuntimeError: post-processing exploded); "
        "maps drawn without predictions",
    )
    # a failure before the recorded layers ran is the model's failure, not a drawing without maps
    with pytest.raises(RuntimeError, match="exploded"):
        rec = RecorderConfig(name="x", recorders={"h": {"source": "bbox_head.retina_cls"}})
        monkeypatch.setattr(RetinaHead, "forward", broken)
        FeatureSource(mc, rec, ActivationCache(None), Timer(), pool=ModelPool()).features([scene])
