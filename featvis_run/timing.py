"""Wall-clock time per phase of a run (model load, forward, render, ...), reported in the manifest."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Timer"]


@dataclass
class Timer:
    """Accumulates wall-clock seconds per phase."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, started: float) -> None:
        """Add the time since ``started`` (a ``time.perf_counter()`` reading) to ``phase``."""
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started
