"""Sweep job folders are named by what the sweep varies (featvis_run/sweeper.py)."""

import pytest

from featvis_run.sweeper import swept_dirname

from .test_cli import run_cli

EXCLUDED = ["image", "model.checkpoint"]


def test_only_swept_keys_name_the_job_folder():
    job = ["reducer=select_max", "topk=8", "output.scale=per_level", "image=/data/a.jpg"]
    assert swept_dirname(job, {"reducer"}, EXCLUDED, ",", "=") == "reducer=select_max"
    # two swept keys, sorted as Hydra sorts them, with the configured separators
    assert swept_dirname(job, {"topk", "reducer"}, EXCLUDED, "__", ":") == "reducer:select_max__topk:8"


def test_a_sweep_varying_nothing_keeps_every_override_but_the_excluded():
    job = ["topk=8", "image=/data/a.jpg", "+extra=1"]
    assert swept_dirname(job, set(), EXCLUDED, ",", "=") == "+extra=1,topk=8"


@pytest.mark.slow
def test_a_demo_sweep_names_folders_by_the_swept_key(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "reducer=squeeze_mean,select_max", "topk=8", "output.scale=per_level", f"hydra.sweep.dir={sweep}"]
    proc = run_cli(*args, f"cache.dir={tmp_path / 'cache'}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0_reducer=squeeze_mean", "1_reducer=select_max"]
    overrides = (sweep / "1_reducer=select_max" / ".hydra" / "overrides.yaml").read_text().split("\n")
    assert "- topk=8" in overrides and "- output.scale=per_level" in overrides
    assert "sweep: 2 jobs, 1 forward passes" in proc.stdout
