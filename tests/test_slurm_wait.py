"""How long the SLURM launcher waits before giving up on a job, with the shipped settings (``pending_timeout_min:
30``, ``lost_timeout_min: 10``, minutes), on a fake clock and fake jobs: no cluster, no waiting."""

from __future__ import annotations

import time as real_time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from featvis_run import slurm_launcher
from featvis_run.slurm_launcher import FeatvisSlurmLauncher

from .conftest import CONF_DIR


class _Clock:
    """Stands in for the ``time`` module: ``sleep`` moves the clock on instead of waiting."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def time(self) -> float:
        return self.now

    strftime, localtime = staticmethod(real_time.strftime), staticmethod(real_time.localtime)


class _Job:
    """A submitit job that never writes a result; remembers when it was cancelled."""

    def __init__(self, folder: Path, clock: _Clock):
        self.job_id, self.clock, self.cancelled_at = "77_0", clock, None
        self.paths = SimpleNamespace(
            result_pickle=folder / "77_0_result.pkl", stdout=folder / "77_0.out", stderr=folder / "77_0.err"
        )

    def cancel(self, check: bool = True) -> None:
        self.cancelled_at = self.clock.now


@pytest.mark.parametrize(
    ("states", "minutes", "says"),
    [
        ({"77_0": "PENDING"}, "pending_timeout_min", "was still PENDING (Priority) with no job of the sweep running"),
        ({}, "lost_timeout_min", "SLURM gave no state for job 77_0 for"),  # sacct and squeue fail
    ],
    ids=["pending", "lost"],
)
def test_a_job_is_given_up_after_the_configured_minutes_not_seconds(
    tmp_path, monkeypatch, capsys, states, minutes, says
):
    shipped = yaml.safe_load((CONF_DIR / "hydra" / "launcher" / "slurm.yaml").read_text())
    clock = _Clock()
    monkeypatch.setattr(slurm_launcher, "time", clock)
    monkeypatch.setattr(slurm_launcher, "_run", lambda cmd: "Priority\n")  # squeue's pending reason
    launcher = FeatvisSlurmLauncher(
        pending_timeout_min=shipped["pending_timeout_min"],
        lost_timeout_min=shipped["lost_timeout_min"],
        poll_s=shipped["poll_s"],
    )
    launcher._states = lambda job_ids: (dict(states), bool(states))
    job = _Job(tmp_path, clock)
    start = clock.now
    (result,) = launcher._wait([job], [["reducer=none"]], 0)
    waited = job.cancelled_at - start
    limit = shipped[minutes] * 60  # minutes, in seconds
    assert limit < waited <= limit + shipped["poll_s"] + 1
    err = capsys.readouterr().err
    assert err.startswith("featvis-run: error: job #0 (reducer=none): ") and says in err.splitlines()[0]
    assert f"for {shipped[minutes]:g} min" in err and f"hydra.launcher.{minutes}" in err
    assert result.overrides == ["reducer=none"]
