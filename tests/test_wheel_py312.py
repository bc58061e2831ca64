"""The wheel on Python 3.12 without torch: its metadata accepts 3.12, its console script composes the shipped configs,
and the modules that need no torch work there.

A fresh Python 3.12 venv gets the wheel with ``--no-deps`` plus only the pure-Python dependencies from
pyproject.toml (Hydra, omegaconf, rich, numpy, OpenCV; no torch, mmcv, mmengine or mmdet) and pytest, from pip's
cache or PyPI. The tests of the torch-free modules are copied next to it (with ``conf`` pointing at the wheel's
configs) and run with that venv's pytest, so they import the installed wheel, not this checkout. Python 3.12 is
looked up on PATH, then in pyenv's versions (``FEATVIS_PYTHON312`` names one); the test skips when none is found.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent

# Test modules whose code under test needs no torch: they import neither torch nor mmdet/mmengine/mmcv at module
# level, and neither do the featvis_run modules they import (maps, report, store, schema, demo.shapes, ...).
NO_TORCH_TEST_FILES = (
    "test_reduce.py",
    "test_geometry.py",
    "test_diff.py",
    "test_summary.py",
    "test_config.py",
    "test_cache.py",
    "test_multi_image.py",
    "test_demo_shapes.py",
)
# Support files those import (test_cli: run_cli); their own tests are not run.
SUPPORT_FILES = ("__init__.py", "conftest.py", "random_order.py", "browser.py", "test_cli.py")
# Tests in those files that do need torch or mmdet and are not marked slow (slow ones build a model: deselected).
NEEDS_TORCH = (
    "test_reduce.py::test_standardize_matches_mmrazor_norm",  # compares with torch's formula
    "test_config.py::test_model_options_name_configs_that_exist_in_the_installed_libraries",  # the libraries' configs
    "test_demo_shapes.py::test_coco_dataset_deterministic_and_loads_with_mmdet",  # mmdet's CocoDataset
    "test_multi_image.py::test_batched_maps_equal_one_by_one_for_images_of_different_sizes",  # runs a model
)
HEAVY = ("torch", "mmcv", "mmengine", "mmdet", "mmsegmentation")


def _python_version(exe: str) -> tuple[int, int] | None:
    """(major, minor) of an interpreter that runs (a pyenv shim of an unselected version does not), else None."""
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def find_python312() -> tuple[str | None, str]:
    """A working Python 3.12 interpreter and where it was looked for."""
    candidates = [os.environ.get("FEATVIS_PYTHON312") or "", shutil.which("python3.12") or ""]
    roots = []
    if pyenv := shutil.which("pyenv"):
        out = subprocess.run([pyenv, "root"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            roots.append(Path(out.stdout.strip()))
    roots.append(Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")))
    for root in dict.fromkeys(roots):
        found = sorted((root / "versions").glob("3.12*/bin/python3.12"), reverse=True)
        candidates += [str(p) for p in found]
    for exe in dict.fromkeys(c for c in candidates if c):
        if _python_version(exe) == (3, 12):
            return exe, ""
    where = "FEATVIS_PYTHON312, python3.12 on PATH, " + ", ".join(f"{r}/versions/3.12*" for r in dict.fromkeys(roots))
    return None, where


def pure_python_requirements() -> list[str]:
    """pyproject.toml's dependencies without torch and the OpenMMLab libraries; OpenCV as the headless build."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    keep = []
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.\-]+", dep).group(0).lower()
        if name in HEAVY:
            continue
        keep.append("opencv-python-headless" + dep[len(name) :] if name == "opencv-python" else dep)
    return keep


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)


@pytest.fixture(scope="module")
def venv312(tmp_path_factory) -> Path:
    """A fresh Python 3.12 venv holding the wheel (no deps), the pure-Python dependencies and pytest; no torch."""
    python312, where = find_python312()
    if python312 is None:
        pytest.skip(f"no Python 3.12 found (looked at {where}); install one, e.g. `pyenv install 3.12`")
    tmp = tmp_path_factory.mktemp("py312")
    built = _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist"), str(REPO)])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("featvis_run-*.whl")
    venv = tmp / "venv"
    made = _run([python312, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    deps = _run([*pip, *pure_python_requirements(), "pytest>=8"], timeout=900)
    assert deps.returncode == 0, f"pip install of the pure-Python dependencies failed:\n{deps.stderr[-3000:]}"
    own = _run([*pip, "--no-deps", str(wheel)], timeout=300)
    assert own.returncode == 0, own.stderr[-3000:]
    return venv


def test_venv_is_python312_without_torch(venv312):
    probe = (
        "import importlib.util, sys, featvis_run; print(*sys.version_info[:2]); print(featvis_run.__file__); "
        f"print(*[m for m in {('torch', 'mmcv', 'mmengine', 'mmdet', 'mmseg')!r} if importlib.util.find_spec(m)])"
    )
    proc = _run([str(venv312 / "bin" / "python"), "-c", probe], cwd=venv312)
    assert proc.returncode == 0, proc.stderr
    version, where, heavy = (proc.stdout.splitlines() + [""])[:3]
    assert version == "3 12"
    assert where.startswith(str(venv312))  # the installed wheel, not the checkout
    assert heavy == "", f"{heavy} installed: the test would not show that these modules work without them"


def test_help_lists_the_config_groups(venv312):
    proc = _run([str(venv312 / "bin" / "featvis-run"), "--help"], cwd=venv312)
    assert proc.returncode == 0, proc.stderr
    assert "== Configuration groups ==" in proc.stdout
    assert re.search(r"^model: .*\bretinanet_r101\b", proc.stdout, re.M)
    assert re.search(r"^reducer: .*\bselect_max\b", proc.stdout, re.M)
    # no Hydra plugin warning (the SLURM launcher without hydra-submitit-launcher), no traceback
    assert "Error importing" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_cfg_job_composes_the_shipped_configs(venv312):
    cmd = [str(venv312 / "bin" / "featvis-run"), "--cfg", "job", "model=retinanet_r101", "reducer=select_max"]
    proc = _run(cmd, cwd=venv312)
    assert proc.returncode == 0, proc.stderr
    assert "mmdet_config: retinanet/retinanet_r101_fpn_2x_coco.py" in proc.stdout
    assert "name: select_max" in proc.stdout
    assert "Error importing" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_torch_free_modules_pass_their_tests_on_python312(venv312, tmp_path):
    for entry in NEEDS_TORCH:  # a renamed test would otherwise run (and fail) without a word about the list
        file, name = entry.split("::")
        assert re.search(rf"^def {name}\(", (TESTS / file).read_text(), re.M), f"{entry} is gone: update NEEDS_TORCH"
    (tmp_path / "tests").mkdir()
    for name in SUPPORT_FILES + NO_TORCH_TEST_FILES:
        shutil.copy2(TESTS / name, tmp_path / "tests" / name)
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")  # pytest settings and markers
    # conftest's CONF_DIR (its REPO / "conf"): the configs inside the installed wheel
    (installed,) = (venv312 / "lib").glob("python3.12/site-packages/featvis_run/conf")
    (tmp_path / "conf").symlink_to(installed, target_is_directory=True)
    cmd = [str(venv312 / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
    cmd += [f"tests/{name}" for name in NO_TORCH_TEST_FILES]
    cmd += [arg for entry in NEEDS_TORCH for arg in ("--deselect", f"tests/{entry}")]
    proc = _run(cmd, cwd=tmp_path, timeout=600)
    tail = proc.stdout[-4000:]
    assert proc.returncode == 0, tail + proc.stderr[-2000:]
    passed = re.search(r"(\d+) passed", tail)
    assert passed and int(passed.group(1)) >= 100, tail
    assert not re.search(r"\d+ (failed|error|skipped)", tail), tail
