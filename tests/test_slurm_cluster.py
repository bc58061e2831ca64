"""Sweeps through ``hydra/launcher=slurm`` on a real SLURM cluster (``scripts/slurm-local.sh up`` starts a one-node
one on this machine). The cluster tests are skipped, with the reason, when no cluster answers; the first three tests
need none (the launcher's config, an sbatch that refuses, and no SLURM at all).

The installed console script runs each sweep; the jobs run on the cluster in other processes, share the cache
folder, and the sweep ends with a summary. Every subprocess has a timeout: a hanging sweep fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from .conftest import console_script
from .report_page import page_data

pytestmark = pytest.mark.slow

SLURM_DIR = Path(os.environ.get("FEATVIS_SLURM_DIR", "/tmp/featvis-slurm"))
LEVELS = [f"p{i}" for i in range(3, 8)]


def _cluster_env() -> dict[str, str]:
    env = dict(os.environ)
    local_conf = SLURM_DIR / "etc" / "slurm.conf"
    if "SLURM_CONF" not in env and local_conf.exists():
        env["SLURM_CONF"] = str(local_conf)  # the cluster of scripts/slurm-local.sh
    return env


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    """The environment that reaches a SLURM cluster with an idle node and working accounting; else skip."""
    env = _cluster_env()
    hint = "start one with scripts/slurm-local.sh up"
    if shutil.which("sinfo") is None:
        pytest.skip(f"no SLURM cluster: sinfo is not installed ({hint})")
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=15)
        sacct = subprocess.run(["sacct", "-n", "-X"], env=env, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired as err:
        pytest.skip(f"no SLURM cluster: {err.cmd[0]} does not answer within 15 s ({hint})")
    if sinfo.returncode != 0:
        last = (sinfo.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"no SLURM cluster: sinfo failed: {last} ({hint})")
    if not {"idle", "mixed"} & set(sinfo.stdout.split()):
        pytest.skip(f"no idle SLURM node (sinfo: {sinfo.stdout.split()}) ({hint})")
    if sacct.returncode != 0:
        pytest.skip(f"SLURM accounting does not answer: sacct: {sacct.stderr.strip()[-200:]} ({hint})")
    return env


def run_sweep(env: dict[str, str], *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = subprocess.run(
        [console_script(), "-m", "hydra/launcher=slurm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # a hung sweep fails here
        cwd=cwd,
        env=env,
    )
    proc.seconds = time.monotonic() - start  # type: ignore[attr-defined]
    return proc


def slurm_job_ids(sweep: Path) -> list[str]:
    """The SLURM ids (``<array>_<task>``) submitit made folders for in the sweep."""
    folder = sweep / ".submitit"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and "_" in p.name) if folder.exists() else []


@pytest.fixture()
def sweep(tmp_path: Path, slurm_env: dict[str, str]):
    """The sweep folder; whatever the test left on the cluster is cancelled afterwards."""
    path = tmp_path / "sweep"
    yield path
    ids = slurm_job_ids(path)
    if ids:
        subprocess.run(["scancel", *ids], env=slurm_env, capture_output=True, timeout=30)


def summary(sweep: Path) -> dict:
    return json.loads((sweep / "summary.json").read_text())


def test_launcher_config_is_featvis_launcher_with_defaults_for_a_small_node(tmp_path):
    proc = subprocess.run(
        [console_script(), "hydra/launcher=slurm", "--cfg", "hydra"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    launcher = yaml.safe_load(proc.stdout)["hydra"]["launcher"]
    assert launcher["_target_"] == "hydra_plugins.featvis_slurm_launcher.FeatvisSlurmLauncher"
    assert launcher["cpus_per_task"] <= 2 and launcher["mem_gb"] <= 4 and launcher["partition"] is None
    assert launcher["pending_timeout_min"] > 0  # finite: a sweep never waits for ever
    # Hydra instantiates launchers only from classes it found in the hydra_plugins package
    code = (
        "from hydra.core.plugins import Plugins; from hydra.plugins.launcher import Launcher; "
        "names = [f'{c.__module__}.{c.__name__}' for c in Plugins.instance().discover(Launcher)]; "
        "assert 'hydra_plugins.featvis_slurm_launcher.FeatvisSlurmLauncher' in names, names"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_request_sbatch_refuses_ends_the_sweep_with_one_line(tmp_path):
    # no cluster needed: a fake sbatch that refuses, and a fake srun (submitit looks for it before submitting)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\nexit 1\n"
    )
    (fake / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sbatch", "srun"):
        (fake / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = run_sweep(env, "hydra.launcher.partition=nope", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("featvis-run: error:")]
    assert errors == [
        "featvis-run: error: SLURM refused the sweep's jobs: Invalid partition name specified (asked partition=nope, "
        "cpus_per_task=1, mem_gb=4, gpus_per_node=None, timeout_min=60); compare with `sinfo -o '%P %c %m %G %l'` "
        "and set hydra.launcher.partition / cpus_per_task / mem_gb / gpus_per_node / timeout_min"
    ]
    assert "Traceback" not in proc.stderr


def test_without_slurm_a_slurm_sweep_is_one_line_saying_how_to_run_locally(tmp_path):
    # PATH without sbatch or srun, whatever this machine has installed
    env = {**os.environ, "PATH": str(tmp_path / "empty-bin")}
    proc = run_sweep(env, "reducer=select_max,squeeze_mean", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "featvis-run: error: hydra/launcher=slurm needs SLURM, but sbatch and srun are not on PATH (no SLURM on this "
        "machine); run the sweep here instead: drop hydra/launcher=slurm (one job after another) or use "
        "hydra/launcher=parallel (joblib, jobs side by side)"
    ]
    assert not (tmp_path / "sweep").exists()  # refused before Hydra made anything


def test_sharded_multi_image_sweep_draws_every_image_once(slurm_env, sweep, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    stems = [f"img{i}" for i in range(6)]
    for i, stem in enumerate(stems):
        img = (rng.random((96, 128, 3)) * 60 + 80).astype(np.uint8)
        cv2.circle(img, (24 + 14 * i, 48), 20, (0, 0, 255), -1)
        cv2.imwrite(str(images / f"{stem}.png"), img)

    proc = run_sweep(
        slurm_env,
        "experiment=multi_image",
        f"images={images}",
        "output.pictures=both",  # the pictures too (multi_image stores maps by default)
        "images.shard=0/3,1/3,2/3",
        f"cache.dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    s = summary(sweep)
    assert s["jobs"] == 3 and s["failed"] == 0, s
    assert [r["status"] for r in s["rows"]] == ["ok"] * 3
    assert [r["overrides"]["images.shard"] for r in s["rows"]] == ["0/3", "1/3", "2/3"]
    assert len(slurm_job_ids(sweep)) == 3  # three SLURM array tasks

    # every image in exactly one shard's manifest, and drawn (every FPN level) in exactly one job folder
    listed, pids = Counter(), set()
    for row in s["rows"]:
        manifest = json.loads((sweep / row["job"] / "manifest.json").read_text())
        listed.update(Path(im["path"]).stem for im in manifest["images"])
        pids.add(manifest["pid"])
        assert manifest["status"] == "ok" and len(manifest["images"]) == 2
    assert listed == Counter(stems)
    assert s["summary_pid"] not in pids and len(pids) == 3  # the jobs ran in the cluster's processes
    for stem in stems:
        drawn = sorted(p.relative_to(sweep).as_posix() for p in sweep.rglob(f"{stem}/neck/*.png"))
        assert len(drawn) == len(LEVELS), (stem, drawn)
        assert len({d.rsplit("/neck/", 1)[0] for d in drawn}) == 1, drawn  # one job folder

    shown = {m["picture"] for m in page_data(sweep / "index.html")["maps"]}
    for row in s["rows"]:
        assert len(row["files"]) == 2 * len(LEVELS)
        for f in row["files"]:
            assert f in shown, f
            assert (sweep / f).is_file(), f
    print(f"3-shard SLURM sweep: {proc.seconds:.1f} s")  # type: ignore[attr-defined]


def _start_sweep(env: dict[str, str], *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [console_script(), "-m", "hydra/launcher=slurm", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )


def test_a_cancelled_job_ends_the_sweep_with_its_error_not_a_hang(slurm_env, sweep, tmp_path):
    proc = _start_sweep(
        slurm_env,
        "reducer=select_max,squeeze_mean",
        f"cache.dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while len(slurm_job_ids(sweep)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        ids = slurm_job_ids(sweep)
        assert len(ids) == 2, (ids, proc.poll())
        subprocess.run(["scancel", ids[1]], env=slurm_env, check=True, timeout=30)
        start = time.monotonic()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    # "ended CANCELLED by 0", or, for a pending array task SLURM drops without a record, "(cancelled with scancel?)"
    line = [ln for ln in err.splitlines() if ln.startswith("featvis-run: error: job #1 (reducer=squeeze_mean")]
    assert len(line) == 1 and f"SLURM job {ids[1]} " in line[0] and "CANCEL" in line[0].upper(), err[-2000:]
    s = summary(sweep)
    statuses = {r["overrides"]["reducer"]: (r["status"], r["error"]) for r in s["rows"]}
    assert statuses["select_max"] == ("ok", None)
    assert statuses["squeeze_mean"][0] == "error" and f"SLURM job {ids[1]} " in statuses["squeeze_mean"][1]
    assert any(f"SLURM job {ids[1]} " in (j["error"] or "") for j in page_data(sweep / "index.html")["jobs"])
    print(f"cancelled job reported {time.monotonic() - start:.1f} s after scancel")


def test_a_request_larger_than_the_cluster_is_refused_at_once(slurm_env, sweep, tmp_path):
    cpus = 4 * (os.cpu_count() or 1) + 64  # more than any node here has
    proc = run_sweep(
        slurm_env,
        "reducer=select_max,squeeze_mean",
        f"hydra.launcher.cpus_per_task={cpus}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("featvis-run: error:")]
    assert len(line) == 1 and "SLURM refused the sweep's jobs" in line[0] and f"cpus_per_task={cpus}" in line[0]
    assert "Traceback" not in proc.stderr
    assert slurm_job_ids(sweep) == []


def test_jobs_that_never_start_are_cancelled_after_the_pending_timeout(slurm_env, sweep, tmp_path):
    # held jobs are accepted but never start, like a request no node can serve on a cluster without
    # EnforcePartLimits, or a drained node
    proc = run_sweep(
        slurm_env,
        "reducer=select_max,squeeze_mean",
        "+hydra.launcher.additional_parameters.hold=true",
        "hydra.launcher.pending_timeout_min=0.1",
        "hydra.launcher.poll_s=1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=90,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.count("was still PENDING (JobHeldUser)") == 2, proc.stderr[-2000:]
    s = summary(sweep)
    assert s["jobs"] == 2 and s["failed"] == 2
    assert all("pending_timeout_min" in r["error"] for r in s["rows"])
    states = subprocess.run(
        ["squeue", "-h", "-o", "%i %T", "-j", ",".join(i.split("_")[0] for i in slurm_job_ids(sweep))],
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "PENDING" not in states.stdout  # nothing left queued


def test_channel_statistics_of_slurm_shards_merge_into_one_process_table(slurm_env, sweep, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        img = (rng.random((96, 128, 3)) * 60 + 80).astype(np.uint8)
        cv2.circle(img, (30 + 20 * i, 48), 12 + 6 * i, (0, 0, 255), -1)
        cv2.imwrite(str(images / f"img{i}.png"), img)
    common = ("experiment=multi_image", f"images={images}", "analysis.channels=true", f"cache.dir={tmp_path / 'c'}")
    proc = run_sweep(slurm_env, *common, "images.shard=0/2,1/2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(slurm_job_ids(sweep)) == 2
    assert all(r["status"] == "ok" for r in summary(sweep)["rows"])
    single = tmp_path / "single"
    local = subprocess.run(
        [console_script(), *common, f"output.dir={single}"], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert local.returncode == 0, local.stderr[-3000:]

    def table(path: Path) -> list[list[str]]:
        return [line.split(",") for line in path.read_text().splitlines()]

    merged, one = table(sweep / "channels.csv"), table(single / "channels.csv")
    assert merged[0] == one[0] and len(merged) == len(one) == 1 + 5 * 64
    head = one[0]
    for m, s in zip(merged[1:], one[1:], strict=True):
        exact = [head.index(k) for k in ("layer", "level", "channel", "dead", "cells")]
        assert [m[i] for i in exact] == [s[i] for i in exact]
        close = [head.index(k) for k in ("mean", "std", "max", "min", "sparsity")]
        np.testing.assert_allclose([float(m[i]) for i in close], [float(s[i]) for i in close], rtol=1e-6, atol=1e-12)
