"""Loading a checkpoint without trust: weights, and the training state mmengine saves beside them, running no code.

``torch.load(weights_only=True)`` alone refuses what mmengine's training loop saves (``work_dirs/x/epoch_12.pth``):
besides the weights it holds a ``message_hub`` of ``HistoryBuffer`` objects and numpy scalars and arrays. This loader
runs torch's own ``weights_only`` unpickler with an explicit allowlist on top of torch's (``torch.serialization.
safe_globals``, torch >= 2.5): numpy's dtype, array and scalar rebuilders (the scalar one checks its dtype), and
stand-ins for ``HistoryBuffer`` and ``getattr(HistoryBuffer, ...)`` that create an empty :class:`SkippedObject`. On an
older torch a restricted unpickler resolves the same names and refuses BUILD on anything else. Either way the file
must first pass :func:`featvis_run.models.checkpoint_scan.scan_checkpoint`, which checks every call, BUILD and size
before anything is built.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import functools
import pickle
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1
    from numpy.core import multiarray as _multiarray

from featvis_run.models.checkpoint_scan import HISTORY_BUFFER, STORAGE_ITEMSIZE, TORCH_VALUES

__all__ = ["SkippedObject", "load_without_trust"]

_LOCK = threading.Lock()  # safe_globals changes a process-wide set: one load at a time adds and removes ours
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")


class SkippedObject:
    """Stands in for a training-state object of an OpenMMLab class (``HistoryBuffer``): created empty, it takes any
    state and does nothing with it."""

    def __setstate__(self, state: Any) -> None:
        pass


class HistoryBuffer(SkippedObject):
    """The stand-in for mmengine's ``HistoryBuffer`` under the name pickles give it."""


HistoryBuffer.__module__ = HISTORY_BUFFER.rsplit(".", 1)[0]


def _named(func: Any, module: str, name: str) -> Any:
    """``func`` under the global name a pickle uses (torch keys its allowlist by ``__module__.__qualname__``)."""
    func.__module__, func.__qualname__, func.__name__ = module, name, name
    return func


def _getattr(owner: Any, name: str) -> Any:
    """``getattr`` as mmengine pickles use it: an attribute of ``HistoryBuffer`` (its statistics methods)."""
    if owner is HistoryBuffer and isinstance(name, str):
        return HistoryBuffer
    raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) is not allowed in a checkpoint")


def _plain_dtype(dtype: Any) -> np.dtype:
    """``dtype`` if it is a plain number type exactly as numpy makes it (flags, size), else UnpicklingError."""
    honest = np.dtype(dtype.str) if isinstance(dtype, np.dtype) and dtype.kind in "biufc" else None
    if honest is None or dtype.hasobject or (dtype.flags, dtype.itemsize) != (honest.flags, honest.itemsize):
        raise pickle.UnpicklingError(f"numpy dtype {dtype!r} is not a plain number type")
    return dtype


def _scalar_for(module: str) -> Any:
    def scalar(dtype: Any, data: Any) -> Any:
        if type(data) is not bytes or len(data) != _plain_dtype(dtype).itemsize:
            raise pickle.UnpicklingError("a numpy scalar's data does not fit its dtype")
        return _multiarray.scalar(dtype, data)

    return _named(scalar, module, "scalar")


def _reconstruct_for(module: str) -> Any:
    def _reconstruct(cls: Any, shape: Any, typecode: Any) -> Any:
        if cls is not np.ndarray:
            raise pickle.UnpicklingError(f"numpy _reconstruct of {cls!r} is not allowed in a checkpoint")
        return _multiarray._reconstruct(np.ndarray, shape, typecode)

    return _named(_reconstruct, module, "_reconstruct")


@functools.cache
def _dtype_types() -> tuple[type, ...]:
    """The classes of the numpy dtypes the scan lets through (BUILD sets their state)."""
    found = set()
    for kind in "biufc":
        for size in (1, 2, 4, 8, 16, 32):
            with contextlib.suppress(TypeError):  # no such size of that kind
                found.add(type(np.dtype(f"{kind}{size}")))
    return tuple(sorted(found, key=lambda t: t.__name__))


@functools.cache
def _allowlist() -> dict[str, Any]:
    """Global name -> what it loads as, beyond torch's own weights_only allowlist."""
    table: dict[str, Any] = {
        "numpy.dtype": np.dtype,
        "numpy.ndarray": np.ndarray,
        "builtins.getattr": _named(_getattr, "builtins", "getattr"),
        HISTORY_BUFFER: HistoryBuffer,
    }
    for module in _MULTIARRAY:
        table[f"{module}.scalar"] = _scalar_for(module)
        table[f"{module}._reconstruct"] = _reconstruct_for(module)
    return table


def _has_safe_globals() -> bool:
    import torch.serialization

    return hasattr(torch.serialization, "safe_globals") and hasattr(torch.serialization, "get_safe_globals")


def load_without_trust(path: Path) -> Any:
    """``torch.load`` of a checkpoint that passed the scan, building only what the allowlist names (see the module
    docstring); raises ``pickle.UnpicklingError`` for anything else."""
    import torch

    if not _has_safe_globals():
        return _restricted_load(path)
    with _LOCK:
        present = set(torch.serialization.get_safe_globals())
        extra = [g for g in (*_allowlist().values(), *_dtype_types()) if g not in present]
        with torch.serialization.safe_globals(extra):
            return torch.load(path, map_location="cpu", weights_only=True)


class _RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """torch < 2.5: the pure-Python unpickler, with globals from the allowlist only and BUILD only on data."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def find_class(self, module: str, name: str) -> Any:
        import torch
        import torch._utils

        full = f"{'builtins' if module == '__builtin__' else module}.{name}"
        torch_names = {
            "collections.OrderedDict": collections.OrderedDict,
            "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
            "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
            "torch.Size": torch.Size,
            "torch.device": torch.device,
            "_codecs.encode": codecs.encode,
            "builtins.set": set,
            "builtins.complex": complex,
            "builtins.bytearray": bytearray,
        }
        if full in torch_names:
            return torch_names[full]
        if full in TORCH_VALUES or full in STORAGE_ITEMSIZE:
            return getattr(torch, name)
        if full in _allowlist():
            return _allowlist()[full]
        raise pickle.UnpicklingError(f"global {full} is not allowed in a checkpoint")

    def _load_build(self) -> None:
        inst = self.stack[-2]
        allowed = (collections.OrderedDict, HistoryBuffer, np.ndarray, *_dtype_types())
        if type(inst) not in allowed:
            raise pickle.UnpicklingError(f"BUILD on {type(inst).__name__} is not allowed in a checkpoint")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.BUILD[0]] = _load_build


def _restricted_load(path: Path) -> Any:
    """``torch.load`` through :class:`_RestrictedUnpickler` (zip and legacy formats)."""
    import torch

    module = types.SimpleNamespace(
        __name__="featvis_restricted_pickle", Unpickler=_RestrictedUnpickler, load=_load, dumps=pickle.dumps
    )
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)


def _load(file: Any, **kwargs: Any) -> Any:
    """``pickle.load`` with :class:`_RestrictedUnpickler` (torch's legacy, non-zip format)."""
    return _RestrictedUnpickler(file, **kwargs).load()
