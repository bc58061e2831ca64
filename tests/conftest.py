"""Shared fixtures: small images and paths. Tests that build real mmdet models are marked ``slow``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from .browser import browser  # noqa: F401  (one session-wide chromium for every browser test: Playwright's sync API allows one)
from .random_order import (  # noqa: F401  (hooks: random test order unless pytest-randomly does it)
    pytest_addoption,
    pytest_collection_modifyitems,
    pytest_report_header,
    pytest_terminal_summary,
)

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"


def console_script() -> str:
    """The installed ``featvis-run`` script of the interpreter running the tests."""
    candidate = Path(sys.executable).parent / "featvis-run"
    return str(candidate) if candidate.exists() else (shutil.which("featvis-run") or "featvis-run")


@pytest.fixture()
def scene_image(tmp_path: Path) -> Path:
    """A 240 x 400 image with a red disc (left) and a blue rectangle (right) on a noisy background."""
    rng = np.random.default_rng(0)
    img = (rng.random((240, 400, 3)) * 60 + 80).astype(np.uint8)
    cv2.circle(img, (100, 120), 50, (0, 0, 255), -1)
    cv2.rectangle(img, (250, 60), (360, 200), (255, 0, 0), -1)
    path = tmp_path / "scene.jpg"
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    # checkpoint digests and other per-user caches go to a folder of this test session, not the user's home
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    os.environ.setdefault("OMP_NUM_THREADS", "2")


TINY_RETINANET = """
_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
model = dict(
    backbone=dict(depth=18, base_channels=8, init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    bbox_head=dict(num_classes=3, in_channels=16, feat_channels=16, stacked_convs=1),
)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline, metainfo=dict(classes=('a', 'b', 'c'))))
"""


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real mmdet RetinaNet (ResNet-18 at 1/8 width, 16-channel FPN, 3 classes) that builds and runs in ~1 s."""
    path = tmp_path_factory.mktemp("cfg") / "tiny_retinanet.py"
    path.write_text(TINY_RETINANET)
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights-only checkpoint of the tiny model with non-default weights and dataset_meta."""
    import torch

    from featvis_run.models.pool import ModelPool
    from featvis_run.models.registry import build_model
    from featvis_run.schema import ModelConfig

    det, _ = build_model(ModelConfig(name="tiny", mmdet_config=str(tiny_config), seed=123), ModelPool())
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    meta = {"dataset_meta": {"classes": ["x", "y", "z"]}}
    torch.save({"state_dict": det.model.state_dict(), "meta": meta}, path)
    return path


@pytest.fixture(autouse=True)
def _fresh_model_pool() -> None:
    """No test reuses a model another test built in this process (in-process reuse is tested explicitly)."""
    from featvis_run import hashing
    from featvis_run.models.pool import shared_pool

    shared_pool().clear()
    hashing._MEMO.clear()  # file digests remembered in memory (the on-disk store is this session's own)
