"""A regular (non-editable) wheel ships the configs: its console script composes them from outside the checkout."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("featvis_run-*.whl")
    return path


def test_wheel_contains_every_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for yaml in (REPO / "conf").rglob("*.yaml"):
        assert f"featvis_run/conf/{yaml.relative_to(REPO / 'conf').as_posix()}" in names


def test_installed_wheel_console_script_finds_its_configs(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import featvis_run; print(featvis_run.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.strip().startswith(str(site))  # the wheel's copy, not the checkout
    proc = subprocess.run(
        [str(site / "bin" / "featvis-run"), "--cfg", "job", "model=retinanet_r101", "reducer=select_max"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "mmdet_config: retinanet/retinanet_r101_fpn_2x_coco.py" in proc.stdout
    assert "name: select_max" in proc.stdout
