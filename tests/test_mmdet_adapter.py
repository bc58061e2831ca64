"""The mmdet adapter on real (small) mmdet models: configs, cfg-options, checkpoints, test pipeline, inference."""

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from featvis_run.errors import ModelError
from featvis_run.models.mmdet import MmdetAdapter
from featvis_run.models.openmmlab import parse_cfg_options
from featvis_run.models.pool import ModelPool
from featvis_run.models.registry import build_model, run_batch
from featvis_run.schema import ModelConfig

resolve_mmdet_config = MmdetAdapter().resolve_config


def load_detector(mc: ModelConfig):
    """Build ``mc`` afresh (a pool of its own: nothing reused from other tests)."""
    return build_model(mc, ModelPool())[0]


def tiny(tiny_config: Path, **kw) -> ModelConfig:
    return ModelConfig(name="tiny", mmdet_config=str(tiny_config), **kw)


def test_resolves_configs_from_installed_mmdet_without_copies():
    import mmdet

    path = resolve_mmdet_config("retinanet/retinanet_r101_fpn_2x_coco.py")
    assert path.is_file() and Path(mmdet.__file__).parent in path.parents
    assert resolve_mmdet_config("retinanet_r50_fpn_2x_coco") == resolve_mmdet_config(
        "mmdet::retinanet/retinanet_r50_fpn_2x_coco.py"
    )
    with pytest.raises(ModelError, match=r"model.mmdet_config='retinanet_r5O_fpn'.*closest"):
        resolve_mmdet_config("retinanet_r5O_fpn")


def test_cfg_options_use_mmengine_semantics():
    opts = parse_cfg_options(["model.test_cfg.score_thr=0.3", "a.b=[1,2]", "c=(320,320)", "d=none_of_these"])
    assert opts == {"model.test_cfg.score_thr": 0.3, "a.b": [1, 2], "c": (320, 320), "d": "none_of_these"}
    with pytest.raises(ModelError, match="'oops' is not key=value"):
        parse_cfg_options(["oops"])


@pytest.mark.slow  # builds the tiny detector twice (and is the first to import mmdet's models)
def test_random_init_is_seeded_and_reproducible(tiny_config):
    a = load_detector(tiny(tiny_config, seed=1)).model.state_dict()
    b = load_detector(tiny(tiny_config, seed=1)).model.state_dict()
    c = load_detector(tiny(tiny_config, seed=2)).model.state_dict()
    key = "neck.fpn_convs.0.conv.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])


def test_cfg_options_are_merged_into_the_mmdet_config(tiny_config):
    det = load_detector(tiny(tiny_config, cfg_options=["model.test_cfg.score_thr=0.5"]))
    assert det.plan.cfg.model.test_cfg.score_thr == 0.5


def test_checkpoint_loads_weights_only_with_sha256_and_classes(tiny_config, tiny_checkpoint):
    det = load_detector(tiny(tiny_config, checkpoint=str(tiny_checkpoint), seed=0))
    saved = torch.load(tiny_checkpoint, weights_only=True)["state_dict"]
    key = "bbox_head.retina_cls.weight"
    assert torch.equal(det.model.state_dict()[key], saved[key])
    assert det.checkpoint.sha256 and len(det.checkpoint.sha256) == 64
    assert det.checkpoint.matched_keys == len(saved) and det.checkpoint.missing_keys == 0
    assert det.classes == ("x", "y", "z")


def test_checkpoint_with_pickled_objects_is_refused_unless_trusted(tiny_config, tiny_checkpoint, tmp_path):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["meta"]["args"] = argparse.Namespace(lr=0.1)
    path = tmp_path / "pickled.pth"
    torch.save(ckpt, path)
    refused = r"refused by torch.load\(weights_only=True\).*Namespace.*trust_checkpoint=true"
    with pytest.raises(ModelError, match=refused):
        load_detector(tiny(tiny_config, checkpoint=str(path)))
    det = load_detector(tiny(tiny_config, checkpoint=str(path), trust_checkpoint=True))
    assert det.checkpoint.path == str(path)


def test_bad_checkpoints_give_clear_errors(tiny_config, tmp_path):
    with pytest.raises(ModelError, match=r"model.checkpoint='.*missing.pth': no such file"):
        load_detector(tiny(tiny_config, checkpoint=str(tmp_path / "missing.pth")))
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(ModelError, match=r"is not a PyTorch checkpoint \(neither a torch.save archive nor a pickle\)"):
        load_detector(tiny(tiny_config, checkpoint=str(garbage)))
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"foo.weight": torch.zeros(3)}}, other)
    with pytest.raises(ModelError, match="does not fit this model: none of its 1 tensors"):
        load_detector(tiny(tiny_config, checkpoint=str(other)))


def test_config_importing_a_package_that_is_not_installed_is_a_one_line_error(tiny_config, tmp_path):
    # an absent package of our own naming: mmpretrain (ConvNeXt backbones) is installed by `make install` now
    cfg = tmp_path / "needs_plugin.py"
    cfg.write_text(
        f"_base_ = [{str(tiny_config)!r}]\n"
        "custom_imports = dict(imports=['featvis_absent_plugin.models'], allow_failed_imports=False)\n"
    )
    with pytest.raises(ModelError) as refused:
        load_detector(tiny(cfg))
    assert str(refused.value) == (
        f"model.mmdet_config={str(cfg)!r} imports the package 'featvis_absent_plugin' (custom_imports), which is not "
        "installed here; install it (pip install featvis_absent_plugin) or choose another config"
    )


def test_cuda_device_without_cuda_is_a_clear_error(tiny_config):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelError, match="model.device='cuda:0'.*use model.device=cpu"):
        load_detector(tiny(tiny_config, device="cuda:0"))


def test_run_batch_returns_geometry_and_detections(tiny_config):
    det = load_detector(tiny(tiny_config, test_scale=[128, 128]))
    images = [np.zeros((100, 200, 3), np.uint8), np.zeros((200, 100, 3), np.uint8)]
    res = run_batch(det, images)
    assert [r.geometry.ori_hw for r in res] == [(100, 200), (200, 100)]
    assert res[0].geometry.img_hw == (64, 128) and res[1].geometry.img_hw == (128, 64)
    assert res[0].geometry.input_hw == res[1].geometry.input_hw == (128, 128)  # padded to the batch
    assert res[0].predictions.boxes.shape[1] == 4 and res[0].predictions.class_names == ("a", "b", "c")


def test_geometry_uses_the_scale_factor_and_the_border_not_just_img_shape():
    from featvis_run.maps.geometry import Geometry
    from featvis_run.models.mmdet import _geometry

    # YOLOX: the pipeline pads to a square, so img_shape is the padded 320 x 320; the content is ori * scale_factor
    yolox = dict(ori_shape=(480, 640), img_shape=(320, 320), scale_factor=(0.5, 0.5), batch_input_shape=(320, 320))
    assert _geometry(yolox) == Geometry((480, 640), (240, 320), (320, 320))
    # SSD: keep_ratio=False stretches each axis by its own factor, (w, h) order
    ssd = dict(ori_shape=(240, 320), img_shape=(300, 300), scale_factor=(0.9375, 1.25), batch_input_shape=(300, 300))
    assert _geometry(ssd) == Geometry((240, 320), (300, 300), (300, 300))
    # CenterNet: no resize, the image centred at border = [top, bottom, left, right]
    centernet = dict(ori_shape=(240, 320), img_shape=(256, 352), border=[8, 248, 16, 336], batch_input_shape=(256, 352))
    assert _geometry(centernet) == Geometry((240, 320), (240, 320), (256, 352), (8, 16))


def test_test_pipeline_drops_annotation_loaders_keeps_to_float32_and_rescales_fixed_pads():
    from mmengine.config import Config

    cfg = Config(
        dict(
            test_pipeline=[
                dict(type="LoadImageFromFile", to_float32=True),
                dict(type="Resize", scale=(640, 640), keep_ratio=True),
                dict(type="Pad", size=(640, 640)),
                dict(type="LoadPanopticAnnotations"),
                dict(type="mmdet.LoadAnnotations", with_bbox=True),
                dict(type="PackDetInputs"),
            ],
            test_dataloader=dict(dataset=dict(pipeline="${test_pipeline}")),
        )
    )
    cfg.test_dataloader.dataset.pipeline = cfg.test_pipeline
    steps = MmdetAdapter().test_pipeline_cfg(cfg, [320, 256])
    assert [s["type"] for s in steps] == ["mmdet.LoadImageFromNDArray", "Resize", "Pad", "PackDetInputs"]
    assert steps[0]["to_float32"] is True and steps[1]["scale"] == (320, 256) and steps[2]["size"] == (320, 320)
