"""A sweep's channel statistics: the shards of one run (jobs that differ only in ``images.shard``) each wrote their
merged sums (``channels.partial.npz``); merged here, they give the ``channels.csv`` one process would have written
over all their images (to rounding). Jobs that differ in anything else are different runs and are not merged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featvis_run.analysis.channels import ChannelMoments, merge_levels
from featvis_run.analysis.collector import CHANNELS_CSV, RUN_PARTIAL
from featvis_run.analysis.partials import channels_csv, read_run_partial
from featvis_run.store.outputs import safe_name, write_bytes

__all__ = ["SHARD_KEY", "SweepChannels", "merge_sweep_channels", "shard_groups"]

SHARD_KEY = "images.shard"


@dataclass(frozen=True)
class SweepChannels:
    """The merged tables written (relative to the sweep folder), the jobs each covers, and why any group was not
    merged."""

    files: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def shard_groups(jobs: Sequence[tuple[str, Mapping[str, str]]]) -> list[tuple[str, list[str]]]:
    """The jobs that are shards of one run: grouped by their overrides other than ``images.shard``, keeping only
    groups of two or more jobs that all set it; each with a label (its other overrides, or ``""``)."""
    groups: dict[tuple[tuple[str, str], ...], list[str]] = {}
    sharded: dict[tuple[tuple[str, str], ...], bool] = {}
    for job, overrides in jobs:
        key = tuple(sorted((k, v) for k, v in overrides.items() if k != SHARD_KEY))
        groups.setdefault(key, []).append(job)
        sharded[key] = sharded.get(key, True) and SHARD_KEY in overrides
    return [
        (" ".join(f"{k}={v}" for k, v in key), names)
        for key, names in groups.items()
        if len(names) > 1 and sharded[key]
    ]


def merge_sweep_channels(sweep_dir: Path, jobs: Sequence[tuple[str, Mapping[str, str]]]) -> SweepChannels:
    """Merge the statistics of each group of shards (see :func:`shard_groups`) into ``channels.csv`` in the sweep
    folder (``channels/<other overrides>.csv`` when the sweep varies more than the shard). A group is left out,
    with a note, when a job has no statistics or two jobs counted the same image."""
    groups = shard_groups(jobs)
    out = SweepChannels()
    for label, names in groups:
        merged: dict[tuple[str, str], ChannelMoments] = {}
        seen: dict[str, str] = {}
        problem = None
        for job in names:
            path = sweep_dir / job / RUN_PARTIAL
            if not path.is_file():
                problem = f"job {job} wrote no {RUN_PARTIAL} (analysis.channels=true?)"
                break
            try:
                levels, images = read_run_partial(path)
                twice = next((i for i in images if i in seen), None)
                if twice is not None:
                    problem = f"image {twice} was counted by jobs {seen[twice]} and {job}"
                    break
                seen.update(dict.fromkeys(images, job))
                merged = merge_levels(merged, levels, {k: f"{k[0]}/{k[1]}" for k in levels})
            except ValueError as err:
                problem = f"job {job}: {err}"
                break
        where = f" ({label})" if label else ""
        if problem is not None:
            out.notes.append(f"channel statistics of the shards{where} not merged: {problem}")
            continue
        rel = CHANNELS_CSV if len(groups) == 1 else f"channels/{safe_name(label or 'all')}.csv"
        write_bytes(sweep_dir / rel, channels_csv(merged).encode("utf-8"))
        out.files[rel] = list(names)
    return out
