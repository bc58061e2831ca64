"""Recording intermediate results of a torch model: module outputs/inputs, method and function outputs.

A :class:`FeatureRecorder` installs forward hooks (modules) or wrappers (methods, functions) on ``__enter__`` and
removes every one of them on ``__exit__``. What it records is kept per recorder name, one entry per call;
mappings then pick the call (``record_idx``) and the tuple element (``data_idx``) to draw, as MMRazor's
recorders do. Nothing here is mmdet-specific.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from featvis_run.errors import RecordingError
from featvis_run.schema import RecorderSpec, RecorderType

__all__ = ["FeatureRecorder", "find_module"]


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted), or a RecordingError naming the closest valid names."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
    top = ", ".join(n for n, _ in model.named_children())
    hint = f"closest: {', '.join(close)}" if close else f"top-level modules: {top}"
    raise RecordingError(
        f"no module named {name!r} in the model ({hint}); list all names with `featvis-run mode=layers`"
    )


def _import_attr(path: str) -> tuple[Any, str, Any]:
    """Split ``pkg.mod.Class.method`` or ``pkg.mod.func`` into (owner object, attribute name, attribute)."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:-1]:
                owner = getattr(owner, attr)
            return owner, parts[-1], getattr(owner, parts[-1])
        except AttributeError:
            break
    raise RecordingError(
        f"source={path!r} is not an importable function or method: give its full import path, "
        "e.g. mmdet.models.dense_heads.retina_head.RetinaHead.forward_single"
    )


def _detach(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, (tuple, list)):
        return type(x)(_detach(v) for v in x)
    return x


class FeatureRecorder:
    """Context manager recording what the configured ``recorders`` see while the model runs."""

    def __init__(self, model: nn.Module, recorders: Mapping[str, RecorderSpec]):
        self.model = model
        self.specs = dict(recorders)
        self.records: dict[str, list[Any]] = {name: [] for name in self.specs}
        self._undo: list[Callable[[], None]] = []
        # Resolve every source now, so that a bad name fails before the (slow) forward pass.
        self._targets = {name: self._resolve(spec) for name, spec in self.specs.items()}

    def _resolve(self, spec: RecorderSpec) -> Any:
        if spec.type in (RecorderType.module_outputs, RecorderType.module_inputs):
            return find_module(self.model, spec.source)
        return _import_attr(spec.source)

    def __enter__(self) -> FeatureRecorder:
        for name, spec in self.specs.items():
            store = self.records[name]
            target = self._targets[name]
            if spec.type is RecorderType.module_outputs:
                handle = target.register_forward_hook(lambda m, i, o, s=store: s.append(_detach(o)))
                self._undo.append(handle.remove)
            elif spec.type is RecorderType.module_inputs:
                handle = target.register_forward_pre_hook(lambda m, i, s=store: s.append(_detach(i)))
                self._undo.append(handle.remove)
            else:
                self._wrap(target, store)
        return self

    def _wrap(self, target: tuple[Any, str, Any], store: list[Any]) -> None:
        owner, attr, original = target
        raw = inspect.getattr_static(owner, attr)
        own = attr in vars(owner)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            store.append(_detach(out))
            return out

        replacement: Any = wrapper
        if isinstance(raw, staticmethod):
            replacement = staticmethod(wrapper)
        elif isinstance(raw, classmethod):  # ``original`` is already bound to the class
            replacement = classmethod(lambda cls, *a, **k: wrapper(*a, **k))
        setattr(owner, attr, replacement)
        self._undo.append(lambda: setattr(owner, attr, raw) if own else delattr(owner, attr))

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()
