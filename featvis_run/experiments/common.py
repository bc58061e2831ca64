"""What every experiment uses besides drawing: the activation cache, its manifest fields, and a progress bar."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featvis_run.errors import ConfigError
from featvis_run.models.source import FeatureSource
from featvis_run.schema import Config
from featvis_run.store.cache import ActivationCache
from featvis_run.timing import Timer

__all__ = ["ImageRate", "activation_cache", "cache_summary", "progress_bar", "resume_hint"]


def resume_hint(cfg: Config, out_dir: Path) -> str:
    """How to resume an interrupted run: the same command when it names its folder, else with that folder."""
    if cfg.output.dir:
        return "rerun the same command to resume"
    return f"rerun it with output.dir={out_dir} to resume"


def activation_cache(cfg: Config) -> ActivationCache:
    """The configured cache (``cache=off``: disabled)."""
    if cfg.cache.max_gb is not None and cfg.cache.max_gb <= 0:
        raise ConfigError(f"cache.max_gb={cfg.cache.max_gb} must be a positive size in GB, or null for no bound")
    max_bytes = int(cfg.cache.max_gb * 1e9) if cfg.cache.max_gb is not None else None
    return ActivationCache(Path(cfg.cache.dir).expanduser() if cfg.cache.enabled else None, max_bytes)


def cache_summary(cache: ActivationCache, sources: Sequence[FeatureSource]) -> dict[str, Any]:
    """Manifest fields: whether the run was served from the cache, model calls made, cache counters and size."""
    passes = sum(s.forward_passes for s in sources)
    configured = cache.configured
    return {
        "pid": os.getpid(),
        "cache_hit": configured and passes == 0 and cache.stats.hits > 0,
        "forward_passes": passes,
        "cache": {
            "enabled": configured,
            "dir": str(cache.home) if cache.home else None,
            "turned_off": cache.warning,
            "hits": cache.stats.hits,
            "misses": cache.stats.misses,
            "corrupt_recomputed": cache.stats.corrupt,
            "recomputed": list(cache.stats.recomputed),  # entries not trusted (unreadable, wrong key, old format)
            "written_bytes": cache.stats.written_bytes,
            "evicted_entries": cache.stats.evicted_entries,
            "evicted_bytes": cache.stats.evicted_bytes,
            "size_bytes": cache.size_bytes(),
            "max_bytes": cache.max_bytes,
        },
    }


def progress_bar(enabled: bool) -> Any:
    """A rich progress bar on stderr (images done / total, rate, ETA), or a no-op context giving None."""
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]images"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


@dataclass(frozen=True)
class ImageRate:
    """The progress bar's rate: images drawn per second of the image loop, without the time spent loading the
    model (the timer's ``model_load`` added since the loop began) and without images restored from a resumed run."""

    timer: Timer
    began: float  # time.perf_counter() when the loop began
    load_before: float  # the timer's model_load then
    restored: int = 0

    @classmethod
    def start(cls, timer: Timer, restored: int = 0, now: float | None = None) -> ImageRate:
        """A rate measured from ``now`` (default: this moment)."""
        began = time.perf_counter() if now is None else now
        return cls(timer, began, timer.seconds.get("model_load", 0.0), restored)

    def text(self, done: int, now: float | None = None) -> str:
        """``"<r> img/s"`` after ``done`` images in all (restored ones included), or "" before the first drawn."""
        now = time.perf_counter() if now is None else now
        loading = self.timer.seconds.get("model_load", 0.0) - self.load_before
        drawn, seconds = done - self.restored, now - self.began - loading
        return f"{drawn / seconds:.2f} img/s" if drawn > 0 and seconds > 0 else ""
