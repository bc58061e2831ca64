"""The ``make`` report targets (README: Standard reports): their commands compose into valid configs (fast, with
``make -n``), and one runs for real (slow)."""

from __future__ import annotations

import csv
import itertools
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from featvis_run.cli_args import expand_shorthands
from featvis_run.experiments.settings import DrawSettings

from .conftest import CONF_DIR, REPO
from .test_config import _compose

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

TARGETS = ("report-fpn", "report-backbone", "report-topk", "report-diff", "report-sweep")


def dry_run(target: str, *variables: str) -> list[str]:
    """The arguments the target passes to featvis-run (``make -n``: printed, not run)."""
    cmd = ["make", "-n", "-s", target, "BIN=/venv/bin", "REPORTS=/reports", *variables]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
    lines = proc.stdout.replace("\\\n", " ").splitlines()  # recipe lines continued with a backslash
    (line,) = [ln for ln in lines if ln.startswith("/venv/bin/featvis-run")]
    return expand_shorthands(shlex.split(line)[1:])  # as the console script does (images=X: images.paths=X)


def help_lines() -> str:
    return subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow  # runs make and composes every job of every report sweep
@pytest.mark.parametrize("target", TARGETS)
def test_each_report_target_composes_every_job_of_its_sweep(target):
    args = dry_run(target)
    assert target in help_lines()
    overrides = [a for a in args if a != "-m"]
    place = [a for a in overrides if a.startswith(("hydra.sweep.dir=", "output.dir="))]
    assert len(place) == 1 and place[0].split("=", 1)[1].startswith(f"/reports/{target.removeprefix('report-')}/")
    assert ("-m" in args) == place[0].startswith("hydra.sweep.dir=")  # sweeps into a sweep folder, single runs not
    choices = [
        [f"{k}={v}" for v in vals.split(",")] for k, vals in (o.split("=", 1) for o in overrides if o not in place)
    ]
    jobs = list(itertools.product(*choices))
    assert (
        len(jobs)
        == {"report-fpn": 4, "report-backbone": 4, "report-topk": 3, "report-diff": 1, "report-sweep": 8}[target]
    )
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):  # once for all jobs: faster
        for job in jobs:  # every job's config is valid, drawing options included
            DrawSettings.from_config(OmegaConf.to_object(compose(config_name="config", overrides=list(job))))


def test_report_targets_take_model_checkpoint_and_images():
    args = dry_run("report-fpn", "MODEL=retinanet_r50", "CHECKPOINT=/w/r50.pth", "IMAGES=/data/val")
    assert {
        "model=retinanet_r50",
        "model.checkpoint=/w/r50.pth",
        "experiment=multi_image",
        "images.paths=/data/val",
    } <= set(args)
    cfg = _compose(*[a for a in args if a != "-m" and not a.startswith(("hydra.", "reducer="))], "reducer=none")
    assert cfg.model.checkpoint == "/w/r50.pth" and cfg.images.paths == "/data/val"
    diff = dry_run("report-diff", "CHECKPOINT_A=/w/a.pth", "CHECKPOINT_B=/w/b.pth")
    cfg = _compose(*[a for a in diff if not a.startswith("output.dir=")])
    assert (cfg.model_a.checkpoint, cfg.model_b.checkpoint) == ("/w/a.pth", "/w/b.pth")


@pytest.mark.slow
def test_report_topk_runs_offline_and_writes_its_gallery(tmp_path):
    proc = subprocess.run(
        ["make", "report-topk", f"BIN={Path(sys.executable).parent}", f"REPORTS={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (sweep,) = (tmp_path / "topk").iterdir()
    assert f"report: {sweep}/index.html" in proc.stdout and (sweep / "index.html").is_file()
    with (sweep / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    for topk in (4, 8, 16):
        (job,) = sweep.glob(f"*topk={topk}")
        assert sorted(p.name for p in (job / "demo_scene/neck").glob("*.png")) == [f"p{i}.png" for i in range(3, 8)]
