"""The holes of the detection and segmentation zoo, in their pure parts: library messages on one line, an mmcv op
without a kernel for the device, mmcv's SyncBN built as plain BN, the fixed input size of BEiT/MAE, the decode-head
preset on cascade and MaskFormer-family heads, and maps nested in (map, class token) pairs. No model is built."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from featvis_run.errors import ModelError, RecordingError
from featvis_run.maps.geometry import Geometry
from featvis_run.models import source as source_module
from featvis_run.models.base import PredictionFailed
from featvis_run.models.mmseg import decode_head_recorders, fixed_input_size
from featvis_run.models.op_kernels import MissingKernel, missing_kernel, missing_kernel_message
from featvis_run.models.openmmlab import plain_batch_norm
from featvis_run.models.registry import adapter_for
from featvis_run.recording.levels import LevelKey, extract_levels
from featvis_run.schema import ModelConfig, RecorderSpec, RecorderType

CARAFE = "carafe_forward_impl: implementation for device cpu not found.\n"
GEOMETRY = Geometry((60, 80), (60, 80), (64, 96), (0, 0))


class _Neckless(nn.Module):
    """A model whose ``neck`` never runs (as when an mmcv op in front of it has no kernel)."""

    def __init__(self):
        super().__init__()
        self.backbone, self.neck = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)


def _built(model: nn.Module):
    return SimpleNamespace(model=model, plan=SimpleNamespace(config=SimpleNamespace(name="carafe_model"), key="model"))


def test_a_library_message_is_one_line_in_a_failure_and_in_the_maps_drawn_note(monkeypatch):
    failed = PredictionFailed([GEOMETRY], RuntimeError("File   not found.\n\n  (retry)\n"))
    assert str(failed) == "RuntimeError: File not found. (retry)"

    def run(built, arrays, boxes=None):  # the backbone ran, then the head failed with a multi-line library message
        built.model.backbone(torch.zeros(1, 3, 8, 8))
        raise PredictionFailed([GEOMETRY], ValueError("bad   box\n"))

    monkeypatch.setattr(source_module, "run_batch", run)
    recorders = {"b": RecorderSpec(type=RecorderType.module_outputs, source="backbone")}
    (item,) = source_module.record_batch(_built(_Neckless()), [np.zeros((60, 80, 3), np.uint8)], recorders, {})
    assert item.notes == (
        "the model failed after its inputs were prepared (ValueError: bad box); maps drawn without predictions",
    )
    assert item.features[LevelKey("b", "out")].shape == (4, 8, 8)


def test_an_op_without_a_kernel_before_the_recorded_layers_is_one_model_error(monkeypatch):
    def run(built, arrays, boxes=None):
        raise PredictionFailed([GEOMETRY], RuntimeError(CARAFE))

    monkeypatch.setattr(source_module, "run_batch", run)
    recorders = {"neck": RecorderSpec(type=RecorderType.module_outputs, source="neck", level_prefix="p")}
    with pytest.raises(ModelError) as info:
        source_module.record_batch(_built(_Neckless()), [np.zeros((60, 80, 3), np.uint8)], recorders, {})
    text = str(info.value)
    assert "\n" not in text and text.startswith("carafe_model uses mmcv's 'carafe_forward' op")
    assert "no cpu kernel here (it needs cuda)" in text and "(neck)" in text and text.endswith("recorder=backbone")

    def other(
        built, arrays, boxes=None
    ):  # any other failure before the recorded layers stays the library's own exception
        raise PredictionFailed([GEOMETRY], KeyError("x"))

    monkeypatch.setattr(source_module, "run_batch", other)
    with pytest.raises(KeyError):
        source_module.record_batch(_built(_Neckless()), [np.zeros((60, 80, 3), np.uint8)], recorders, {})


def test_missing_kernels_are_found_through_causes_and_named():
    wrapped = ValueError("head failed")
    wrapped.__cause__ = RuntimeError("modulated_deform_conv_forward_impl: implementation for device cuda not found.")
    assert missing_kernel(RuntimeError(CARAFE)) == MissingKernel("carafe_forward", "cpu")
    assert missing_kernel(wrapped) == MissingKernel("modulated_deform_conv_forward", "cuda")
    assert missing_kernel(RuntimeError("size mismatch")) is None
    gpu = missing_kernel_message(MissingKernel("carafe_forward", "cuda"), "m", ["neck"], "model_b")
    assert "no cuda kernel here (it needs cpu)" in gpu and "model_b.device=cpu" in gpu


def test_mmcv_sync_bn_becomes_plain_bn_wherever_it_sits():
    model = {
        "type": "MaskRCNN",
        "backbone": {"type": "ResNet", "norm_cfg": {"type": "SyncBN", "requires_grad": True}},
        "roi_head": {
            "bbox_head": {"norm_cfg": {"type": "MMSyncBN", "requires_grad": True}},
            "mask_head": [{"norm_cfg": {"type": "MMSyncBN"}}, {"norm_cfg": {"type": "GN", "num_groups": 32}}],
        },
    }
    assert plain_batch_norm(model) == ["MMSyncBN", "MMSyncBN"]
    assert model["roi_head"]["bbox_head"]["norm_cfg"] == {"type": "BN", "requires_grad": True}
    assert model["roi_head"]["mask_head"][0]["norm_cfg"] == {"type": "BN"}
    assert model["backbone"]["norm_cfg"]["type"] == "SyncBN"  # torch's builds and runs in one process: kept
    assert model["roi_head"]["mask_head"][1]["norm_cfg"]["type"] == "GN"


def test_the_strong_baseline_is_planned_with_plain_bn_and_says_so():
    mc = ModelConfig(
        name="sb", mmdet_config="strong_baselines/mask-rcnn_r50_fpn_rpn-2conv_4conv1fc_syncbn-all_lsj-50e_coco.py"
    )
    plan = adapter_for("mmdet").plan(mc, "model")
    heads = plan.cfg.model.roi_head
    assert heads.bbox_head.norm_cfg.type == heads.mask_head.norm_cfg.type == "BN"
    assert plan.cfg.model.backbone.norm_cfg.type == "SyncBN"
    (note,) = [n for n in plan.notes if "MMSyncBN" in n]
    assert "(mmcv's SyncBN, 2 places)" in note and "built as plain BN" in note


@pytest.mark.parametrize(
    ("backbone", "size"),
    [
        ({"type": "BEiT", "img_size": (640, 640)}, (640, 640)),
        ({"type": "mmseg.MAE", "img_size": 512}, (512, 512)),
        ({"type": "MAE", "img_size": [384]}, (384, 384)),
        ({"type": "BEiT"}, (224, 224)),  # BEiT's default img_size
        ({"type": "VisionTransformer", "img_size": (512, 512)}, None),  # interpolates its position embedding
        ({"type": "ResNetV1c"}, None),
    ],
)
def test_the_fixed_input_size_comes_from_the_backbone(backbone, size):
    assert fixed_input_size({"backbone": backbone}) == size


def test_a_fixed_size_segmentor_is_resized_to_fit_its_crop_and_padded_whatever_the_test_scale():
    adapter = adapter_for("mmseg")
    config = "mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py"
    asked = adapter.plan(ModelConfig(name="mae", config=config, repo="mmseg", test_scale=[128, 128]), "model")
    default = adapter.plan(ModelConfig(name="mae", config=config, repo="mmseg"), "model")
    resize = [s for s in adapter.test_pipeline_cfg(asked.cfg, [128, 128]) if s["type"] == "Resize"]
    assert resize == [{"type": "Resize", "scale": (512, 512), "keep_ratio": True}]
    assert asked.cfg.model.data_preprocessor.test_cfg == {"size": (512, 512)}
    assert asked.identity == default.identity  # the same model and pipeline: the same cached maps
    (note,) = [n for n in asked.notes if "position tables" in n]
    assert note == (
        "MAE's position tables are fixed to 512x512 inputs (its img_size, the training crop): each image is resized "
        "to fit 512x512 and padded to it; model.test_scale=[128, 128] was not used"
    )
    assert not any("has no effect" in n for n in asked.notes)


def _specs():
    return {
        "head_inputs": RecorderSpec(type=RecorderType.method_inputs, source="decode_head.forward", level_prefix="c"),
        "logits": RecorderSpec(type=RecorderType.method_outputs, source="decode_head.forward"),
        "mine": RecorderSpec(type=RecorderType.module_outputs, source="backbone.layer1"),
    }


def test_the_decode_head_preset_follows_cascades_and_query_heads():
    cascade = {"decode_head": [{"type": "FCNHead"}, {"type": "mmseg.OCRHead"}]}
    specs, notes = decode_head_recorders(cascade, _specs())
    assert {k: (s.type, s.source) for k, s in specs.items()} == {
        "head_inputs": (RecorderType.method_inputs, "decode_head.0.forward"),
        "logits": (RecorderType.method_outputs, "decode_head.1.predict"),
        "mine": (RecorderType.module_outputs, "backbone.layer1"),
    }
    assert specs["head_inputs"].level_prefix == "c"
    assert len(notes) == 1 and "cascade of 2 heads (FCNHead, OCRHead)" in notes[0]
    specs, notes = decode_head_recorders({"decode_head": {"type": "Mask2FormerHead"}}, _specs())
    assert (specs["head_inputs"].source, specs["logits"].source) == ("decode_head.forward", "decode_head.predict")
    assert len(notes) == 1 and notes[0].startswith("Mask2FormerHead outputs per-query classes and masks")
    specs, notes = decode_head_recorders({"decode_head": {"type": "PSPHead"}}, _specs())
    assert specs == _specs() and notes == []


def test_maps_inside_map_and_class_token_pairs_are_named_by_stride():
    # DPT's decode head is called with [backbone outputs], each a (map, class token) pair, all at stride 16
    pairs = [[np.full((1, 3, 4, 6), float(i), np.float32), np.zeros((1, 3), np.float32)] for i in range(4)]
    spec = RecorderSpec(type=RecorderType.method_inputs, source="decode_head.forward", level_prefix="c")
    levels = extract_levels({"head_inputs": [[pairs]]}, {"head_inputs": spec}, {}, 1, (64, 96))
    assert list(levels) == [LevelKey("head_inputs", n) for n in ("c4", "c4_2", "c4_3", "c4_4")]
    assert [float(m.mean()) for m in levels.values()] == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(RecordingError, match="holds no feature map"):  # class tokens alone are no map
        extract_levels({"head_inputs": [[[np.zeros((1, 3))]]]}, {"head_inputs": spec}, {}, 1, (64, 96))
