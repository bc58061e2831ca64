"""The zoo from the command line: named model options, the encoder preset, token grids in mode=layers, and the
one-line errors of recordings that cannot be drawn."""

from __future__ import annotations

import json

import pytest

from .test_cli import manifest, run_cli

pytestmark = pytest.mark.slow


def test_deformable_detr_encoder_memory_is_drawn_per_level(tmp_path):
    out = tmp_path / "enc"
    proc = run_cli("model=deformable_detr_r50", "recorder=encoder", "model.test_scale=[320,320]", f"output.dir={out}")
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    # the 480 x 640 demo scene at 240 x 320 (DETRs do not pad): strides 8, 16, 32, 64
    got = {o["level"]: o["shape"][1:] for o in m["outputs"]}
    assert got == {"p3": [30, 40], "p4": [15, 20], "p5": [8, 10], "p6": [4, 5]}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        f"demo_scene/encoder/p{k}.png" for k in range(3, 7)
    ]
    assert m["models"][0]["name"] == "deformable-detr_r50_16xb2-50e_coco"
    assert "deformable-detr_r50_16xb2-50e_coco" in proc.stdout


def test_layers_mode_shows_the_grid_of_swin_tokens(tmp_path):
    out = tmp_path / "layers"
    proc = run_cli("model=retinanet_swin_t", "mode=layers", "model.test_scale=[320,320]", f"output.dir={out}")
    assert proc.returncode == 0, proc.stderr
    layers = {entry["name"]: entry for entry in json.loads((out / "layers.json").read_text())}
    block = layers["backbone.stages.1.blocks.0"]
    assert block["shapes"] == [[1, 1280, 192]] and block["grids"] == ["1x1280x192 tokens: 32x40 grid"]
    assert "32x40 grid" in proc.stdout


def test_tokens_without_a_grid_and_float_paths_are_one_line_errors(tmp_path, tiny_config):
    proc = run_cli(
        "model=detr_r50",
        "model.test_scale=[320,320]",
        "recorder=custom",
        "+recorder.recorders.q={source:decoder.layers.0}",
        f"output.dir={tmp_path / 'q'}",
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "tokens of shape (1, 100, 256)" in proc.stderr
    assert "grid: [H, W]" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(
        f"model.mmdet_config={tiny_config}",
        "model.checkpoint=null",
        "+recorder.mappings.x={recorder:neck,data_idx:1.0}",
        f"output.dir={tmp_path / 'f'}",
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "data_idx=1.0 was read as a number" in proc.stderr and "data_idx: '1.0'" in proc.stderr


def test_a_model_without_a_neck_is_one_line_suggesting_the_other_presets(tmp_path):
    proc = run_cli(
        "model=mmdet",
        "model.mmdet_config=mask2former/mask2former_r50_8xb2-lsj-50e_coco-panoptic.py",
        "model.test_scale=[256,256]",
        f"output.dir={tmp_path / 'm'}",
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "Mask2Former has none" in proc.stderr and "recorder=backbone" in proc.stderr
