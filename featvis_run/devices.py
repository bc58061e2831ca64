"""The devices featvis-run runs models on, checked from the text alone (no torch import): ``cpu``, ``cuda`` and
``cuda:<n>``. Other torch device types (``mps``, ``xpu``, ``meta``, ...) are not supported: models are built and run
on CPU and CUDA only (whether CUDA is usable is checked when a model is built)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["DEVICE_CHOICES", "device_problem"]

#: what a device value may be, as the error messages name it
DEVICE_CHOICES = "cpu, cuda, cuda:<n>"
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def device_problem(key: str, value: Any) -> str | None:
    """The one-line complaint about ``key=value`` if ``value`` is not a supported device, else None."""
    if isinstance(value, str) and _DEVICE.match(value):
        return None
    return f"{key}={value!r} is not one of {DEVICE_CHOICES}; use {key}=cpu (or {key}=cuda:0 with a CUDA GPU)"
