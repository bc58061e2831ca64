"""What every experiment uses besides drawing: the activation cache, its manifest fields, and a progress bar."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from featvis_run.models.source import FeatureSource
from featvis_run.schema import Config
from featvis_run.store.cache import ActivationCache

__all__ = ["activation_cache", "cache_summary", "progress_bar"]


def activation_cache(cfg: Config) -> ActivationCache:
    """The configured cache (``cache=off``: disabled)."""
    return ActivationCache(Path(cfg.cache.dir).expanduser() if cfg.cache.enabled else None)


def cache_summary(cache: ActivationCache, sources: Sequence[FeatureSource]) -> dict[str, Any]:
    """Manifest fields: whether the run was served from the cache, model calls made, cache counters and size."""
    passes = sum(s.forward_passes for s in sources)
    return {
        "pid": os.getpid(),
        "cache_hit": cache.enabled and passes == 0 and cache.stats.hits > 0,
        "forward_passes": passes,
        "cache": {
            "enabled": cache.enabled,
            "dir": str(cache.root) if cache.root else None,
            "hits": cache.stats.hits,
            "misses": cache.stats.misses,
            "corrupt_recomputed": cache.stats.corrupt,
            "written_bytes": cache.stats.written_bytes,
            "size_bytes": cache.size_bytes(),
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
