"""Shared fixtures: small images and paths. Tests that build real mmdet models are marked ``slow``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

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
def _quiet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
