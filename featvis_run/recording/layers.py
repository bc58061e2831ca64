"""Listing a model's modules with the shapes they output and how often they are called (``mode=layers``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["LayerInfo", "LayerListing", "list_layers"]


@dataclass(frozen=True)
class LayerInfo:
    """A module's name, class, the shapes of the tensors its first call output, how many times it was called
    in one forward pass (``record_idx`` picks among those calls), and the grid of any token outputs."""

    name: str
    type: str
    shapes: tuple[tuple[int, ...], ...]
    params: int
    calls: int = 0
    grids: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerListing:
    """Every module's :class:`LayerInfo`, what the run returned, and the exception it raised (modules after the
    failure show no output)."""

    layers: list[LayerInfo]
    result: Any
    error: Exception | None


def _shapes(x: Any) -> tuple[tuple[int, ...], ...]:
    if isinstance(x, torch.Tensor):
        return (tuple(x.shape),)
    if isinstance(x, Mapping):
        return tuple(s for v in x.values() for s in _shapes(v))
    if isinstance(x, (tuple, list)):
        return tuple(s for v in x for s in _shapes(v))
    return ()


def list_layers(model: nn.Module, run: Callable[[], Any]) -> LayerListing:
    """Every named module with the shapes it outputs while ``run()`` executes (hooks removed afterwards).

    An exception from ``run()`` is returned in the listing, not raised: the modules that ran before it are listed."""
    seen: dict[str, tuple[tuple[int, ...], ...]] = {}
    calls: dict[str, int] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:  # must return None: keeps the output
            seen.setdefault(name, _shapes(output))
            calls[name] = calls.get(name, 0) + 1

        return hook

    handles = [m.register_forward_hook(hook_for(name)) for name, m in model.named_modules() if name]
    result, error = None, None
    try:
        result = run()
    except Exception as err:
        error = err
    finally:
        for h in handles:
            h.remove()
    layers = [
        LayerInfo(
            name,
            type(m).__name__,
            seen.get(name, ()),
            sum(p.numel() for p in m.parameters(recurse=True)),
            calls.get(name, 0),
        )
        for name, m in model.named_modules()
        if name
    ]
    return LayerListing(layers, result, error)
