"""Sweeps through the real console script: one forward pass, job folders, summary files, gallery, launchers."""

import csv
import json

import pytest

from .report_page import page_data
from .test_cli import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture()
def sweep_args(scene_image, tiny_config, tmp_path):
    return [
        "-m",
        f"image={scene_image}",
        "model=retinanet_r50",
        f"model.mmdet_config={tiny_config}",
        f"cache.dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]


def test_in_process_sweep_runs_the_model_once_and_writes_a_summary(sweep_args, tmp_path):
    proc = run_cli(*sweep_args, "reducer=select_max,none", "topk=2,4")
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "sweep"
    # the one-valued model=retinanet_r50 is part of the folder names (a model choice is not noise), not a swept key
    jobs = [
        "0_model=retinanet_r50,reducer=select_max,topk=2",
        "1_model=retinanet_r50,reducer=select_max,topk=4",
        "2_model=retinanet_r50,reducer=none,topk=2",
        "3_model=retinanet_r50,reducer=none,topk=4",
    ]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == jobs
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["jobs"] == 4 and summary["failed"] == 0 and summary["forward_passes"] == 1
    assert summary["swept"] == ["reducer", "topk"]
    rows = summary["rows"]
    assert [r["cache_hit"] for r in rows] == [False, True, True, True]
    assert [r["forward_passes"] for r in rows] == [1, 0, 0, 0]
    assert rows[3]["overrides"]["reducer"] == "none" and rows[3]["outputs"] == 5
    with open(sweep / "summary.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [t["job"] for t in table] == jobs and table[0]["status"] == "ok"
    page = page_data(sweep / "index.html")
    pictures = [m["picture"] for m in page["maps"]]
    assert len(pictures) == 20 and "3_model=retinanet_r50,reducer=none,topk=4/scene/neck/p7.png" in pictures
    assert [j["label"] for j in page["jobs"]][3] == "reducer=none, topk=4"
    assert (sweep / "3_model=retinanet_r50,reducer=none,topk=4/scene/neck/p7.png").exists()
    assert "sweep: 4 jobs, 1 forward passes" in proc.stdout
    # select_max ignores topk: job 1 draws exactly job 0's pictures; reducer=none grids differ with topk
    assert summary["duplicates"] == {jobs[1]: jobs[0]}
    assert [t["duplicate_of"] for t in table] == ["", jobs[0], "", ""]
    assert [j["duplicate_of"] for j in page["jobs"]] == [None, jobs[0], None, None]
    assert "1 job(s) drew pictures byte-identical" in proc.stdout
    assert [m["level"] for m in page["maps"]].count("p7") == 4
    assert page["scale_sharing"].startswith("No two jobs share a colour scale")


def test_a_failing_job_is_listed_and_the_others_finish(sweep_args, tmp_path):
    proc = run_cli(*sweep_args, "output.alpha=0.4,1.5")
    assert proc.returncode == 1
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    statuses = {r["overrides"]["output.alpha"]: (r["status"], r["error"]) for r in summary["rows"]}
    assert statuses["0.4"] == ("ok", None)
    assert statuses["1.5"][0] == "error" and "output.alpha=1.5" in statuses["1.5"][1]
    assert "error" in [j["status"] for j in page_data(tmp_path / "sweep" / "index.html")["jobs"]]


def test_output_dir_in_a_sweep_is_refused_per_job_not_merged(sweep_args, tmp_path):
    proc = run_cli(*sweep_args, f"output.dir={tmp_path / 'one'}", "reducer=select_max,squeeze_mean")
    assert proc.returncode == 1 and not (tmp_path / "one").exists()
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert summary["failed"] == 2 and all("hydra.sweep.dir=" in r["error"] for r in summary["rows"])


def test_joblib_jobs_run_in_other_processes_and_share_the_cache(sweep_args, scene_image, tiny_config, tmp_path):
    warm = run_cli(
        f"image={scene_image}",
        "model=retinanet_r50",
        f"model.mmdet_config={tiny_config}",
        f"cache.dir={tmp_path / 'cache'}",
    )
    assert warm.returncode == 0, warm.stderr
    proc = run_cli(*sweep_args, "hydra/launcher=parallel", "reducer=select_max,squeeze_mean,pixel_wise_max")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "sweep" / "summary.json").read_text())
    assert summary["jobs"] == 3 and summary["failed"] == 0
    assert summary["forward_passes"] == 0  # every job read the features the first run cached
    pids = set()
    for row in summary["rows"]:
        manifest = json.loads((tmp_path / "sweep" / row["job"] / "manifest.json").read_text())
        pids.add(manifest["pid"])
    assert summary["summary_pid"] not in pids  # the jobs ran in joblib's worker processes
