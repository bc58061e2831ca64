"""mmpretrain classifiers: pipeline geometry, stage recording, token grids, top classes, class targets (fast), and
tiny real classifiers end to end, with Grad-CAM checked against pytorch-grad-cam (slow)."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featvis_run.errors import ConfigError, ModelError
from featvis_run.maps.geometry import Geometry
from featvis_run.maps.targets import parse_target, select_class, select_detections
from featvis_run.models.mmpretrain import PipelineTrack, top_classes
from featvis_run.recording.levels import LevelKey, StageOutputs, extract_levels
from featvis_run.schema import RecorderSpec, RecorderType

from .classifier_configs import TINY_RESNET_CLS, TINY_VIT_CLS
from .test_cli import run_cli

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
NAMES = ("circle", "square", "triangle", "ring", "star")


def test_a_short_edge_resize_and_centre_crop_is_a_negative_offset():
    track = PipelineTrack((480, 640))
    track.step("ResizeEdge", (480, 640), (256, 341))  # 256 x int(256 * 640 / 480)
    track.step("CenterCrop", (256, 341), (224, 224))  # top round(32 / 2) = 16, left round(117 / 2) = 58
    track.step("PackInputs", (224, 224), (224, 224))
    assert track.geometry((224, 224)) == Geometry((480, 640), (256, 341), (224, 224), (-16, -58))


def test_efficientnet_centre_crop_then_resize_is_an_affine():
    # crop_size 224, padding 32: a 224 / 256 * 480 = 420 pixel square at top round(60 / 2) = 30, left 110, resized
    # to 224: scale 224 / 420; the image's centre (320, 240) lands on the input's centre (112, 112)
    track = PipelineTrack((480, 640), crop_padding=32)
    track.step("EfficientNetCenterCrop", (480, 640), (224, 224))
    geom = track.geometry((224, 224))
    s = 224 / 420
    np.testing.assert_allclose(np.asarray(geom.affine), [[s, 0.0, -110 * s], [0.0, s, -30 * s]])
    assert geom.img_hw == geom.input_hw == (224, 224)
    assert tuple(geom.to_input() @ np.array([320.0, 240.0, 1.0]))[:2] == pytest.approx((112.0, 112.0))


def test_stages_are_the_last_map_of_each_size_with_class_and_distillation_tokens_left_out():
    rng = np.random.default_rng(0)
    stem = rng.random((1, 4, 32, 32), np.float32)
    pooled = rng.random((1, 4, 1, 1), np.float32)  # a pooled vector (ConvNeXt's gap before the norm): no stage
    tokens = rng.random((1, 2 + 16, 6), np.float32)  # class + distillation tokens, then a 4 x 4 grid
    outputs = {
        "patch_embed": (rng.random((1, 16, 6), np.float32), (4, 4)),
        "conv": stem,
        "layers.0": rng.random((1, 18, 6), np.float32),
        "layers.1": tokens,
        "norm": pooled,
        "head_vector": rng.random((1, 6), np.float32),
    }
    levels = extract_levels(
        {"backbone": [StageOutputs(outputs, extra_tokens=2)]},
        {"backbone": RecorderSpec(RecorderType.stage_outputs, "backbone", "c")},
        {},
        batch=1,
        input_hw=(64, 64),
    )
    assert list(levels) == [LevelKey("backbone", "c1"), LevelKey("backbone", "c4")]
    np.testing.assert_array_equal(levels[LevelKey("backbone", "c1")], stem)
    grid = levels[LevelKey("backbone", "c4")]
    assert grid.shape == (1, 6, 4, 4)
    # cell (row 1, col 2) is grid token 1 * 4 + 2 = 6, i.e. sequence token 2 + 6 = 8
    np.testing.assert_array_equal(grid[0, :, 1, 2], tokens[0, 8])


def test_classifier_targets_pick_one_class():
    logits = np.array([0.1, 2.0, -1.0, 0.5, 1.9])
    assert select_class(parse_target("top"), logits, NAMES) == 1
    assert select_class(parse_target("class:ring"), logits, NAMES) == 3
    assert select_class(parse_target("class_idx:4"), logits, NAMES) == 4
    with pytest.raises(ConfigError, match=r"class_idx:0 to 4"):
        select_class(parse_target("class_idx:5"), logits, NAMES)
    with pytest.raises(ConfigError, match="has no class 'cat'"):
        select_class(parse_target("class:cat"), logits, NAMES)
    with pytest.raises(ConfigError, match="a classifier explains one class"):
        select_class(parse_target("det:0"), logits, NAMES)
    with pytest.raises(ConfigError, match="names a class by index, for classifiers"):
        select_detections(parse_target("class_idx:1"), np.ones(1), np.zeros(1), NAMES, 0.3)


def test_top_classes_are_the_best_five_best_first():
    scores = np.array([0.05, 0.3, 0.1, 0.02, 0.2, 0.33], np.float32)
    top = top_classes(scores, ("a", "b", "c", "d", "e", "f"))
    assert [(t["label"], t["index"]) for t in top.top()] == [("f", 5), ("b", 1), ("e", 4), ("c", 2), ("a", 0)]
    assert top.top()[0]["score"] == pytest.approx(0.33)
    assert top.summary(0.9) == {}  # no threshold applies and nothing is counted: the classes are predictions.top


def test_a_missing_mmpretrain_names_its_extra(monkeypatch):
    from featvis_run.models import registry

    def absent(name):
        raise ModuleNotFoundError("No module named 'mmpretrain'", name="mmpretrain")

    monkeypatch.setattr(registry.importlib, "import_module", absent)
    with pytest.raises(ModelError, match=r"needs the package 'mmpretrain'.*pip install 'featvis-run\[mmpretrain\]'"):
        registry.adapter_for("mmpretrain")


# ---- tiny real classifiers (slow: they import mmpretrain and build models) ----


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory) -> Path:
    """A ResNet-18 classifier at 1/8 width with 5 classes on 64 x 64 inputs (see classifier_configs.py)."""
    path = tmp_path_factory.mktemp("cls") / "tiny_resnet_cls.py"
    path.write_text(TINY_RESNET_CLS)
    return path


@pytest.fixture(scope="session")
def photo(tmp_path_factory) -> Path:
    """A 96 x 160 photo: the tiny pipeline resizes it by 0.75 to 72 x 120 and crops 64 x 64 at (4, 28)."""
    rng = np.random.default_rng(3)
    img = cv2.resize((rng.random((12, 20, 3)) * 255).astype(np.uint8), (160, 96), interpolation=cv2.INTER_CUBIC)
    cv2.circle(img, (80, 48), 18, (255, 255, 255), -1)
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    cv2.imwrite(str(path), img)
    return path


def run_here(out: Path, *overrides: str):
    """Compose the config and run the experiment in this process (the model library is imported once)."""
    from featvis_run.experiments.run import run_experiment
    from featvis_run.schema import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = compose(config_name="config", overrides=[*overrides, f"output.dir={out}"])
    cfg = OmegaConf.to_object(composed)
    return run_experiment(cfg, out, OmegaConf.to_container(composed, resolve=False))


@pytest.mark.slow
def test_a_classifier_from_the_command_line_draws_stages_on_the_crop_with_its_top_classes(
    tiny_classifier, photo, tmp_path
):
    out = tmp_path / "run"
    proc = run_cli(
        "model=mmpretrain",
        f"model.config={tiny_classifier}",
        f"image={photo}",
        "output.caption=false",  # the picture alone, pixel for pixel over the photo (no caption band above it)
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RANDOM INIT" in proc.stdout
    m = json.loads((out / "manifest.json").read_text())
    # a single run stores both (output.pictures=both): each stage's picture and its map's values
    want = sorted(f"c{k}.{ext}" for k in range(1, 6) for ext in ("npy", "png"))
    assert sorted(p.name for p in (out / "photo/backbone").iterdir()) == want
    (image,) = m["images"]
    assert image["input_hw"] == [64, 64]
    assert image["geometry"] == {
        "ori_hw": [96, 160],
        "img_hw": [72, 120],
        "input_hw": [64, 64],
        "offset_hw": [-4, -28],
        "affine": None,
    }
    top = image["predictions"]["top"]
    scores = [t["score"] for t in top]
    assert len(top) == 5 and {t["label"] for t in top} == set(NAMES) and scores == sorted(scores, reverse=True)
    assert math.isclose(sum(scores), 1.0, abs_tol=1e-4)  # five classes: the top five are all of the softmax
    picture, bare = cv2.imread(str(out / "photo/backbone/c3.png")), cv2.imread(str(photo))
    # the crop covers original rows [4 / 0.75, 68 / 0.75) = [5.3, 90.7) and columns [37.3, 122.7): no map outside
    np.testing.assert_array_equal(picture[:, 123:], bare[:, 123:])
    np.testing.assert_array_equal(picture[91:, 40:], bare[91:, 40:])
    assert (picture[10:90, 40:120] != bare[10:90, 40:120]).any(axis=2).mean() > 0.9


@pytest.mark.slow
def test_predictions_are_written_on_the_picture_unless_turned_off(tiny_classifier, photo, tmp_path):
    # the picture alone (no caption band above it): the predictions are written at its top left
    common = ("model=mmpretrain", f"model.config={tiny_classifier}", f"image={photo}", "cache=off")
    common += ("output.caption=false",)
    run_here(tmp_path / "on", *common)
    run_here(tmp_path / "off", *common, "output.draw_predictions=false")
    on, off = (cv2.imread(str(tmp_path / f"{k}/photo/backbone/c5.png")) for k in ("on", "off"))
    differs = (on != off).any(axis=2)
    rows, cols = np.where(differs)
    # the five lines are written in a band at the top left; the rest of the picture is the same
    assert differs.any() and rows.min() < 5 and cols.min() < 5 and rows.max() < 90 and cols.max() < 100
    assert not differs[:, 100:].any()


def _reference_gradcam(built, photo_path: Path, layer, class_index: int, reshape=None) -> np.ndarray:
    """pytorch-grad-cam's GradCAM of ``class_index`` at ``layer`` on the same preprocessed input (min-max scaled
    and resized to the input by the package itself)."""
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from featvis_run.models.mmpretrain import MmpretrainAdapter

    adapter = MmpretrainAdapter()
    with adapter.scope():
        data, _ = adapter._prepare(built, [cv2.imread(str(photo_path))])

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x, mode="tensor")

    with GradCAM(model=Logits(built.model), target_layers=[layer], reshape_transform=reshape) as cam:
        return cam(input_tensor=data["inputs"], targets=[ClassifierOutputTarget(class_index)])[0]


def _scaled(cells: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """What pytorch-grad-cam does to a layer's CAM: scale_cam_image (minus the min, over 1e-7 + max, cv2.resize to
    the input), then, aggregating layers, scale_cam_image again (the resized map's extremes lie between cells)."""

    def minmax(x: np.ndarray) -> np.ndarray:
        x = x - x.min()
        return x / (1e-7 + x.max())

    return minmax(cv2.resize(minmax(cells).astype(np.float32), (hw[1], hw[0])))


@pytest.mark.slow
def test_gradcam_agrees_with_pytorch_grad_cam_on_a_cnn(tiny_classifier, photo, tmp_path):
    from featvis_run.models.registry import build_model, plan_model
    from featvis_run.schema import ModelConfig

    run = run_here(
        tmp_path / "cam",
        "model=mmpretrain",
        f"model.config={tiny_classifier}",
        f"image={photo}",
        "reducer=gradcam",
        "target=class:star",
        "cache=off",
        "output.save_arrays=maps",
    )
    built, reused = build_model(plan_model(ModelConfig(name="x", config=str(tiny_classifier), repo="mmpretrain")))
    assert reused  # the very model the run used
    explained = run.images[0].explained
    assert explained == {"target": "class:star", "classes": [{"label": "star", "index": 4}]}
    for level, layer in (("c4", built.model.backbone.layer3), ("c5", built.model.backbone.layer4)):
        ours = np.load(tmp_path / f"cam/photo/backbone/{level}.npy")
        theirs = _reference_gradcam(built, photo, layer, 4)
        assert theirs.shape == (64, 64) and theirs.max() > 0.99
        assert np.abs(_scaled(ours, (64, 64)) - theirs).max() < 1e-3


@pytest.mark.slow
def test_vit_gradcam_on_its_token_grid_agrees_with_pytorch_grad_cam(photo, tmp_path):
    import torch

    from featvis_run.models.registry import build_model, plan_model
    from featvis_run.schema import ModelConfig

    config = tmp_path / "tiny_vit.py"
    config.write_text(TINY_VIT_CLS.format(backbone="VisionTransformer", head="VisionTransformerClsHead"))
    built, _ = build_model(plan_model(ModelConfig(name="x", config=str(config), repo="mmpretrain")))
    with torch.no_grad():  # its head starts at zero (no gradient reaches the tokens): give it weights
        built.model.head.layers.head.weight.copy_(torch.randn(5, 32, generator=torch.Generator().manual_seed(0)))
    run_here(
        tmp_path / "vit",
        "model=mmpretrain",
        f"model.config={config}",
        f"image={photo}",
        "reducer=gradcam",
        "target=top",
        "cache=off",
        "output.save_arrays=maps",
        "recorder=custom",
        "+recorder.recorders.last={type:module_outputs,source:backbone.layers.1.ln1}",
    )
    ours = np.load(tmp_path / "vit/photo/last/out.npy")
    assert ours.shape == (4, 4)  # 17 tokens: the class token left out, a 4 x 4 grid of 16 x 16 patches
    manifest = json.loads((tmp_path / "vit/manifest.json").read_text())
    index = manifest["images"][0]["explained"]["classes"][0]["index"]

    def tokens_to_grid(x):
        return x[:, 1:, :].reshape(x.shape[0], 4, 4, x.shape[2]).permute(0, 3, 1, 2)

    theirs = _reference_gradcam(built, photo, built.model.backbone.layers[1].ln1, index, tokens_to_grid)
    assert theirs.max() > 0.99
    assert np.abs(_scaled(ours, (64, 64)) - theirs).max() < 1e-3
