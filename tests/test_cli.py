"""End-to-end runs of the installed ``featvis-run`` console script on real mmdet models."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import REPO, console_script

pytestmark = pytest.mark.slow


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script; by default in a fresh folder, so its outputs/ and cache are its own."""
    cwd = cwd or Path(tempfile.mkdtemp(prefix="featvis-cli-"))
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=900, cwd=cwd)


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_help_does_not_import_torch():
    code = "import sys, featvis_run.cli; assert 'torch' not in sys.modules and 'mmdet' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    proc = run_cli("--help")
    assert proc.returncode == 0 and "model: " in proc.stdout and "reducer: " in proc.stdout


def test_default_run_is_the_shipped_demo_model_on_the_demo_scene(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(f"output.dir={out}")  # no model, no image, no checkpoint: everything comes from the package
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == [f"demo_scene/neck/p{i}.png" for i in range(3, 8)]
    m = manifest(out)
    model = m["models"][0]
    assert model["name"] == "demo_shapes" and model["weights"] != "random init"
    assert model["checkpoint"].endswith("assets/demo_shapes.pth") and len(model["sha256"]) == 64
    assert m["images"][0]["path"].endswith("assets/demo_scene.png") and m["images"][0]["size_hw"] == [480, 640]
    # the demo scene holds 10 objects; the trained detector finds them (boxes drawn at score >= 0.3)
    assert 10 <= m["images"][0]["detections"] <= 14, m["images"][0]
    assert "RANDOM INIT" not in proc.stdout
    # "with boxes": pure green box lines run along every annotated object's outline (within 4 px, on >= 60% of it)
    import cv2
    import numpy as np

    # the default picture has a caption band above it: the scene is its bottom 480 rows (the band is dark, no green)
    picture = cv2.imread(str(out / "demo_scene/neck/p3.png"))
    assert picture.shape[0] > 480 and picture.shape[1:] == (640, 3)
    band, picture = picture[:-480], picture[-480:]
    assert not np.all(band == (0, 255, 0), axis=-1).any()
    green = np.all(picture == (0, 255, 0), axis=-1).astype(np.uint8)
    near = cv2.dilate(green, np.ones((9, 9), np.uint8)).astype(bool)
    for obj in json.loads((REPO / "featvis_run/assets/demo_scene.json").read_text())["objects"]:
        x1, y1, x2, y2 = (int(round(v)) for v in obj["bbox"])
        outline = np.concatenate([near[y1, x1:x2], near[y2 - 1, x1:x2], near[y1:y2, x1], near[y1:y2, x2 - 1]])
        assert outline.mean() >= 0.6, (obj, outline.mean())
    # Hydra's record of the composed config and the overrides, in output.dir
    assert (out / ".hydra/overrides.yaml").read_text().strip() == f"- output.dir='{out}'"  # path values quoted
    recorded = (out / ".hydra/config.yaml").read_text()
    assert "mmdet_config: pkg://featvis_run/demo/demo_shapes_config.py" in recorded and "reducer:" in recorded
    assert (out / ".hydra/hydra.yaml").is_file()


def test_real_retinanet_r50_random_init_writes_every_fpn_level(scene_image, tmp_path):
    out = tmp_path / "run"
    proc = run_cli(
        f"image={scene_image}",
        "model=retinanet_r50",
        'model.cfg_options=["test_dataloader.dataset.pipeline.1.scale=(192,192)"]',
        "output.caption=false",  # the picture alone, at the image's size (no caption band above it)
        f"output.dir={out}",
        f"cache.dir={tmp_path / 'cache'}",
    )
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == [f"scene/neck/p{i}.png" for i in range(3, 8)]
    m = manifest(out)
    assert m["status"] == "ok" and m["experiment"] == "single"
    model = m["models"][0]
    assert model["name"] == "retinanet_r50_fpn_2x_coco"  # the config's stem
    assert model["weights"] == "random init" and model["checkpoint"] is None
    assert model["mmdet_config"].endswith("retinanet/retinanet_r50_fpn_2x_coco.py")
    assert m["images"][0]["path"] == str(scene_image) and m["images"][0]["size_hw"] == [240, 400]
    # 240x400 resized to fit 192x192 -> 115x192, padded to 128x192: P3 is 16x24, of which 15x24 covers the image
    p3 = m["outputs"][0]
    assert (p3["layer"], p3["level"], p3["shape"], p3["valid_hw"]) == ("neck", "p3", [256, 16, 24], [15, 24])
    assert p3["reducer"] == "squeeze_mean"
    # the stats by hand, from the recorded maps as the cache holds them (float16 x a power-of-two scale; a run with
    # the cache on draws exactly these): P3 cropped to its 15 valid rows, mean over the 256 channels
    import numpy as np

    (entry,) = (tmp_path / "cache").rglob("*.npz")
    with np.load(entry) as data:
        meta = json.loads(str(data["meta"]))
        index = meta["levels"].index(["neck", "p3"])
        level = data[f"level_{index}"].astype(np.float32) * np.float32(meta["scales"][index])
    mean_map = level[:, :15, :].mean(axis=0, dtype=np.float64)
    want = {"min": mean_map.min(), "max": mean_map.max(), "mean": mean_map.mean()}
    assert p3["stats"] == pytest.approx(want, rel=1e-4, abs=1e-6)
    assert set(m["timings"]) >= {"model_load", "forward", "render"}
    assert m["config"]["model"]["name"] == "retinanet_r50_fpn_2x_coco"
    assert "RANDOM INIT" in proc.stdout and "neck" in proc.stdout and str(out) in proc.stdout.replace("\n", "")
    import cv2

    assert cv2.imread(str(out / "scene/neck/p5.png")).shape == (240, 400, 3)  # overlaid at the image's size


def test_topk_grid_backbone_heatmaps_with_checkpoint(scene_image, tmp_path, tiny_config, tiny_checkpoint):
    out = tmp_path / "grid"
    proc = run_cli(
        f"image={scene_image}",
        "model=retinanet_r50",
        f"model.mmdet_config={tiny_config}",
        f"model.checkpoint={tiny_checkpoint}",
        "recorder=backbone",
        "reducer=none",
        "topk=12",
        "layout=grid_2x4",
        "layout.arrangement=[3,4]",
        "output=heatmap",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = manifest(out)
    assert [o["level"] for o in m["outputs"]] == ["c2", "c3", "c4", "c5"]
    c2 = m["outputs"][0]
    assert c2["shape"][0] == 8 and len(c2["channels"]) == 8 and "clamped to the 8 channels" in c2["note"]
    assert len(m["outputs"][3]["channels"]) == 12
    assert m["models"][0]["sha256"] and m["models"][0]["checkpoint"] == str(tiny_checkpoint)
    assert "clamped" in proc.stdout


def test_use_norm_standardizes_every_channel_before_reducing(tmp_path):
    # the demo model's FPN outputs are ReLU'd (>= 0): a mean over channels is positive. Standardized channels have
    # mean 0 over the cells of the image, so their mean over channels averages to 0 over those cells too.
    plain, normed = tmp_path / "plain", tmp_path / "normed"
    assert run_cli(f"output.dir={plain}", "draw_boxes=false").returncode != 0  # (a typo'd key is refused by Hydra)
    assert run_cli(f"output.dir={plain}", "output.draw_boxes=false").returncode == 0
    assert run_cli(f"output.dir={normed}", "output.draw_boxes=false", "use_norm=true").returncode == 0
    for a, b in zip(manifest(plain)["outputs"], manifest(normed)["outputs"], strict=True):
        assert a["stats"]["min"] >= 0 and a["stats"]["mean"] > 0.01
        assert abs(b["stats"]["mean"]) < 1e-4 and b["stats"]["min"] < 0 < b["stats"]["max"]
        assert (plain / a["file"]).read_bytes() != (normed / b["file"]).read_bytes()


def test_layers_mode_lists_modules_with_shapes(scene_image, tmp_path, tiny_config):
    out = tmp_path / "layers"
    proc = run_cli(
        f"image={scene_image}",
        "model=retinanet_r50",
        f"model.mmdet_config={tiny_config}",
        "mode=layers",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    layers = {entry["name"]: entry for entry in json.loads((out / "layers.json").read_text())}
    assert layers["neck"]["shapes"][0][1] == 16 and len(layers["neck"]["shapes"]) == 5
    assert layers["neck"]["calls"] == 1 and layers["bbox_head.retina_cls"]["calls"] == 5  # once per FPN level
    assert "backbone.layer1" in layers and "neck.fpn_convs.0" in proc.stdout.replace("\n", "")


def test_recording_a_method_and_module_inputs(scene_image, tmp_path, tiny_config):
    out = tmp_path / "method"
    proc = run_cli(
        f"image={scene_image}",
        "model=retinanet_r50",
        f"model.mmdet_config={tiny_config}",
        "recorder.recorders={}",
        "recorder.mappings={}",
        "+recorder.recorders.cls={type:method_outputs,source:mmdet.models.dense_heads.RetinaHead.forward_single}",
        "+recorder.mappings.cls_p4={recorder:cls,data_idx:0,record_idx:1}",
        "+recorder.recorders.head_in={type:module_inputs,source:neck.fpn_convs.0}",
        "+recorder.mappings.head_in_p3={recorder:head_in,data_idx:0}",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    outs = {o["level"]: o for o in manifest(out)["outputs"]}
    assert outs["cls_p4"]["shape"][0] == 9 * 3  # anchors x classes
    assert outs["head_in_p3"]["shape"][0] == 16
    assert outs["cls_p4"]["shape"][1] * 2 == pytest.approx(outs["head_in_p3"]["shape"][1], abs=1)
    assert "pkg_resources" not in proc.stderr
