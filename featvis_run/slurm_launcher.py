"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, with waiting that always ends.

hydra-submitit-launcher submits the sweep as one job array and then blocks in ``job.results()``, job after job.
submitit asks ``sacct`` for states with a back-off that grows to 10 minutes and counts PENDING and "no record"
(sacct failing, no accounting, or a pending array task cancelled before SLURM split it off, which leaves no record
at all) as not finished. So a sweep waits for ever for a job that is accepted but can never start (a request
larger than any node on a cluster without ``EnforcePartLimits``, a held job, a drained or down node), for such a
cancelled task, or once accounting stops answering; another cancelled job ends the sweep only after the back-off,
with a traceback, and without the sweep summary.

``FeatvisSlurmLauncher`` submits exactly as the plugin does (same parameters, same ``.submitit`` folder), then
watches every job of the array itself:

- every ``poll_s`` seconds one ``sacct`` call reads all states, and ``squeue`` those sacct does not list; result
  files are checked every second;
- a task squeue stops listing (twice in a row) while sacct has no record of it is gone (cancelled);
- no job of the sweep running or finishing for ``pending_timeout_min`` while the rest are PENDING: those are
  cancelled (``scancel``) with squeue's reason (null: wait for ever);
- a job that SLURM gives no state for during ``lost_timeout_min`` (sacct and squeue failing) is cancelled (best
  effort);
- a job that ends without a result (CANCELLED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, FAILED outside Python, gone, or
  cancelled by the two rules above) is a failed job of the sweep: one ``featvis-run: error:`` line on stderr, and
  its job folder gets ``.hydra/overrides.yaml`` and ``error.json``, so the sweep summary lists it with that reason,
  the other jobs finish, and the exit code is 1 (as for any failed job);
- no ``sbatch``/``srun`` on PATH (no SLURM here) ends the sweep before anything is submitted, with one line saying
  how to run it locally, exit code 2;
- sbatch refusing the submission (more CPUs or memory than a node has, an unknown partition, ...) ends the sweep
  at once with one line naming the request, exit code 2;
- Ctrl-C cancels the sweep's unfinished jobs.

Nothing here imports torch or mmdet; it is used only by the process that launches the sweep (jobs unpickle it too).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict

from featvis_run.cli_checks import slurm_missing

__all__ = ["FeatvisSlurmLauncher"]

log = logging.getLogger(__name__)

# job states (sacct's first word): ended, or not started yet; anything else (RUNNING, COMPLETING, ...) is progress
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
         "REVOKED"}  # fmt: skip
WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "PREEMPTED", "SUSPENDED"}
_ASKED = ("partition", "cpus_per_task", "mem_gb", "gpus_per_node", "timeout_min")
_OWN_KEYS = ("pending_timeout_min", "lost_timeout_min", "poll_s")
_CMD_TIMEOUT_S = 60  # a slurm command that does not answer within this counts as failed


def _say(message: str) -> None:
    print(f"featvis-run: error: {message}", file=sys.stderr, flush=True)


def _first(state: str | None) -> str | None:
    """The state's first word: "CANCELLED by 0" -> "CANCELLED"."""
    return state.split()[0].upper() if state and state.strip() else None


def _run(cmd: list[str]) -> str | None:
    """stdout of a slurm command, or None if it failed, is missing or hung."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_CMD_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None


class FeatvisSlurmLauncher(SlurmLauncher):
    """``SlurmLauncher`` whose wait ends: pending timeout, lost-job timeout, failed jobs listed in the summary."""

    def __init__(
        self,
        pending_timeout_min: float | None = 30,
        lost_timeout_min: float = 10,
        poll_s: float = 5,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.pending_timeout_s = None if pending_timeout_min is None else float(pending_timeout_min) * 60
        self.lost_timeout_s = float(lost_timeout_min) * 60
        self.poll_s = max(float(poll_s), 1.0)
        self._submitted_at = time.time()

    # ---- submission (as hydra-submitit-launcher's BaseSubmititLauncher.launch) ----
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        assert self.config is not None and len(job_overrides) > 0
        missing = slurm_missing()  # submitit would say it with a traceback (also checked before Hydra: cli_checks)
        if missing:
            _say(missing)
            sys.exit(2)
        params = {k: v for k, v in self.params.items() if k not in _OWN_KEYS}
        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(
            cluster="slurm", folder=params["submitit_folder"], slurm_max_num_timeout=params.get("max_num_timeout", 0)
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{(k if k in base else f"slurm_{k}"): v for k, v in params.items() if k not in init_keys}
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        self._submitted_at = time.time()
        try:
            jobs = executor.map_array(self, *zip(*job_params, strict=True))
        except submitit.core.utils.FailedJobError as err:
            self._refused(str(err))
        except FileNotFoundError as err:
            _say(f"{err.filename or 'sbatch'} not found: hydra/launcher=slurm needs SLURM's sbatch, sacct and scancel")
            sys.exit(2)
        log.info(f"SLURM job array {jobs[0].job_id.split('_')[0]}: {len(jobs)} jobs, sweep {sweep_dir}")
        return self._wait(jobs, job_overrides, initial_job_idx)

    def _refused(self, stderr: str) -> NoReturn:
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        refused = [ln.split("failed:", 1)[1].strip() for ln in lines if "Batch job submission failed:" in ln]
        if refused:  # slurmctld said no: the request does not fit this cluster
            asked = ", ".join(f"{k}={self.params.get(k)}" for k in _ASKED)
            _say(
                f"SLURM refused the sweep's jobs: {refused[0]} (asked {asked}); compare with "
                "`sinfo -o '%P %c %m %G %l'` and set hydra.launcher.partition / cpus_per_task / mem_gb / "
                "gpus_per_node / timeout_min"
            )
        else:
            errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()] or lines[-2:]
            _say(f"sbatch failed: {'; '.join(errors)} (is SLURM reachable from here? try `sinfo`, check SLURM_CONF)")
        sys.exit(2)

    # ---- waiting ----
    def _states(self, job_ids: list[str]) -> tuple[dict[str, str], bool]:
        """SLURM's state of each array task (e.g. "CANCELLED by 0"; unknown tasks left out) from sacct, and from
        squeue for the tasks sacct does not list (held jobs reach accounting only once eligible; sacct fails without
        slurmdbd); and whether squeue answered for those (then a task neither lists is gone)."""
        from submitit.slurm.slurm import SlurmInfoWatcher

        def ask(cmd: list[str], header: str = "") -> dict[str, str] | None:
            out = _run(cmd)
            if out is None:
                return None
            info = SlurmInfoWatcher().read_info(header + out)
            return {j: info[j]["State"].strip() for j in job_ids if info.get(j, {}).get("State", "").strip()}

        mains = sorted({j.split("_")[0] for j in job_ids})
        # jobs active since just before the submission: not an older job that had the same id (ids restart when
        # slurmctld loses its state, accounting keeps them)
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._submitted_at - 60))
        states = ask(["sacct", "-S", since, "-o", "JobID,State", "--parsable2", *(f"-j{m}" for m in mains)]) or {}
        if len(states) == len(job_ids):
            return states, True
        queued = ask(["squeue", "--states=all", "-h", "-r", "-o", "%i|%T", "-j", ",".join(mains)], "JobID|State\n")
        return {**(queued or {}), **states}, queued is not None

    def _wait(self, jobs: list[Any], job_overrides: Sequence[Sequence[str]], first_idx: int) -> list[JobReturn]:
        start = time.monotonic()
        todo = dict(enumerate(jobs))
        results: dict[int, JobReturn] = {}
        progress_at = start  # last time a job of the sweep ran or finished
        known_at = dict.fromkeys(todo, start)  # last time SLURM had a state for the job
        missing = dict.fromkeys(todo, 0)  # polls in a row in which squeue answered without listing the job
        last_poll = float("-inf")
        try:
            while todo:
                for i, job in list(todo.items()):  # finished with a result (checked every second)
                    if job.paths.result_pickle.exists():
                        results[i] = self._collect(job, job_overrides[i], first_idx + i)
                        del todo[i]
                        progress_at = time.monotonic()
                now = time.monotonic()
                if todo and now - last_poll >= self.poll_s:
                    last_poll = now
                    states, answered = self._states([j.job_id for j in todo.values()])
                    for i, job in list(todo.items()):
                        full = states.get(job.job_id, "")  # e.g. "CANCELLED by 0"
                        state = _first(full)
                        missing[i] = 0 if state or not answered else missing[i] + 1
                        if state:
                            known_at[i] = now
                        # squeue lists every task slurmctld has (from submission on); one it drops without a record
                        # (a pending array task cancelled before it was split off) is gone
                        if state in FINAL or missing[i] >= 2:
                            results[i] = self._collect(job, job_overrides[i], first_idx + i, full or "(gone)")
                            del todo[i]
                            progress_at = now
                        elif state and state not in WAITING:
                            progress_at = now  # RUNNING, COMPLETING, ...
                        elif now - known_at[i] > self.lost_timeout_s:
                            job.cancel(check=False)
                            why = (
                                f"SLURM gave no state for job {job.job_id} for {self.lost_timeout_s / 60:g} min "
                                "(sacct and squeue failing or without a record; hydra.launcher.lost_timeout_min); "
                                "cancelled it"
                            )
                            results[i] = self._failed(job, job_overrides[i], first_idx + i, why)
                            del todo[i]
                    waiting = [i for i, j in todo.items() if _first(states.get(j.job_id)) in WAITING]
                    if (
                        self.pending_timeout_s is not None
                        and waiting
                        and len(waiting) == len(todo)
                        and now - progress_at > self.pending_timeout_s
                    ):
                        for i in waiting:
                            self._give_up_pending(todo.pop(i), job_overrides[i], first_idx + i, results, i)
                if todo:
                    time.sleep(1)
        except KeyboardInterrupt:
            for job in todo.values():
                job.cancel(check=False)
            print(f"featvis-run: cancelled {len(todo)} unfinished SLURM job(s)", file=sys.stderr)
            raise
        return [results[i] for i in range(len(jobs))]

    def _give_up_pending(self, job: Any, overrides: Sequence[str], idx: int, results: dict, i: int) -> None:
        reason = (_run(["squeue", "-h", "-j", job.job_id, "-o", "%r"]) or "").strip() or "reason unknown"
        job.cancel(check=False)
        why = (
            f"SLURM job {job.job_id} was still PENDING ({reason}) with no job of the sweep running for "
            f"{self.pending_timeout_s / 60:g} min (hydra.launcher.pending_timeout_min); cancelled it. "
            f"See `squeue`/`sinfo -R`, or raise pending_timeout_min on a busy cluster"
        )
        results[i] = self._failed(job, overrides, idx, why)

    def _collect(self, job: Any, overrides: Sequence[str], idx: int, state: str | None = None) -> JobReturn:
        """The job's JobReturn if it left a result; else the job is recorded as failed."""
        # a job that ran to its end wrote its result; a shared filesystem may show it a little late
        started = job.paths.stdout.exists() or job.paths.stderr.exists()
        late = _first(state) in ("COMPLETED", "FAILED") or (state == "(gone)" and started)
        deadline = time.monotonic() + (15 if late else 0)
        while not job.paths.result_pickle.exists() and time.monotonic() < deadline:
            time.sleep(1)
        if job.paths.result_pickle.exists():
            try:
                return job.results()[0]
            except Exception as err:  # an exception in the job outside featvis-run's own handling
                tail = str(err).strip().splitlines()
                return self._failed(job, overrides, idx, f"SLURM job {job.job_id} raised: {tail[-1] if tail else err}")
        if state == "(gone)":  # a pending array task cancelled before SLURM split it off leaves no record
            why = f"SLURM job {job.job_id} left the queue without a trace before {'ending' if started else 'starting'}"
            why += " (cancelled with scancel?)"
        else:
            why = f"SLURM job {job.job_id} ended {state} before {'writing a result' if started else 'it started'}"
        if _first(state) == "TIMEOUT":
            why += " (raise hydra.launcher.timeout_min)"
        elif _first(state) == "OUT_OF_MEMORY":
            why += " (raise hydra.launcher.mem_gb)"
        return self._failed(job, overrides, idx, why)

    def _failed(self, job: Any, overrides: Sequence[str], idx: int, why: str) -> JobReturn:
        """Print one line and write ``error.json`` (and ``.hydra/overrides.yaml``) into the job's folder, where the
        sweep summary finds it. Returns a completed JobReturn so that Hydra goes on to its multirun-end callbacks."""
        logs = [p for p in (job.paths.stderr, job.paths.stdout) if p.exists() and p.stat().st_size]
        message = f"{why}; log: {logs[0]}" if logs else why
        _say(f"job #{idx} ({' '.join(overrides)}): {message}")
        try:
            job_dir = self._job_dir(overrides, idx, job.job_id)
            hydra_dir = job_dir / ".hydra"
            hydra_dir.mkdir(parents=True, exist_ok=True)
            if not (hydra_dir / "overrides.yaml").exists():
                OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")
            if not any(job_dir.glob("manifest*.json")):
                _write_json(job_dir / "error.json", {"error": message, "slurm_job_id": job.job_id})
        except Exception as err:  # never let bookkeeping hide the failure itself
            _say(f"could not record job #{idx} in the sweep folder: {err}")
        return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=None)

    def _job_dir(self, overrides: Sequence[str], idx: int, job_id: str) -> Path:
        """The folder Hydra gives job ``idx`` (``hydra.sweep.dir/hydra.sweep.subdir``), resolved as ``run_job`` does."""
        from hydra.core.hydra_config import HydraConfig

        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = idx
            cfg.hydra.job.id = job_id
        saved = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(cfg)
        try:
            sweep_dir, subdir = (str(OmegaConf.select(cfg, f"hydra.sweep.{k}")) for k in ("dir", "subdir"))
            return Path(sweep_dir) / subdir
        finally:
            HydraConfig.instance().cfg = saved


def _write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".error-", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
