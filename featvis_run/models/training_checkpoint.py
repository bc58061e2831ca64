"""Reading the checkpoints mmengine's training loop saves (``work_dirs/x/epoch_12.pth``) without running code.

``torch.load(weights_only=True)`` refuses them: besides the weights they hold the training state, a ``message_hub``
of mmengine ``HistoryBuffer`` objects and numpy scalars. Drawing needs none of it. This unpickler builds tensors,
plain containers and numpy values as usual, stands a harmless placeholder in for OpenMMLab classes (``mmengine.*``,
``mmcv.*``, ``mmdet.*``, ...: their objects are created empty, and none of their code runs), and refuses every other
global, so a pickle that would call ``os.system`` is still refused and the user must trust it explicitly.
"""

from __future__ import annotations

import codecs
import collections
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1
    from numpy.core import multiarray as _multiarray

__all__ = ["SkippedObject", "load_training_checkpoint"]

_OPENMMLAB = ("mmengine", "mmcv", "mmdet", "mmseg", "mmpretrain", "mmrazor", "mmyolo", "mmpose")
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_PLAIN = {"set": set, "frozenset": frozenset, "slice": slice, "complex": complex, "bytearray": bytearray}


class SkippedObject:
    """Stands in for a training-state object of an OpenMMLab class: it takes any arguments and state, and does
    nothing with them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _safe_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as the pickles use it: numpy and torch types (``numpy.dtypes.Float64DType``), and attributes of a
    skipped object (another skipped object)."""
    if obj is SkippedObject or isinstance(obj, SkippedObject):  # e.g. HistoryBuffer.min, kept by its instances
        return SkippedObject
    if not isinstance(name, str) or name.startswith("_"):
        raise pickle.UnpicklingError(f"getattr(..., {name!r}) is not allowed in a training checkpoint")
    allowed_owner = isinstance(obj, types.ModuleType) and obj.__name__.split(".")[0] in ("numpy", "torch")
    value = getattr(obj, name) if allowed_owner else None
    if isinstance(value, type) and issubclass(value, (np.dtype, np.generic, np.ndarray)):
        return value
    import torch

    if isinstance(value, (torch.dtype, torch.device)) or value is torch.Size:
        return value
    raise pickle.UnpicklingError(f"getattr of {name!r} is not allowed in a training checkpoint")


class _TrainingUnpickler(pickle.Unpickler):
    """Builds what a training checkpoint holds (see the module docstring); refuses any other global."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name.startswith("_rebuild_"):
            import torch._utils

            return getattr(torch._utils, name)
        if module == "torch" and (name in ("Size", "device") or name.endswith("dtype")):
            import torch

            return getattr(torch, name)
        if module in _NUMPY_CORE and name in ("_reconstruct", "scalar"):
            return getattr(_multiarray, name)
        if module == "numpy" and name in ("dtype", "ndarray"):
            return getattr(np, name)
        if module == "numpy.dtypes" and isinstance(getattr(np.dtypes, name, None), type):
            return getattr(np.dtypes, name)
        if module == "_codecs" and name == "encode":
            return codecs.encode
        if module in ("builtins", "__builtin__"):
            if name == "getattr":
                return _safe_getattr
            if name in _PLAIN:
                return _PLAIN[name]
        if module.split(".")[0] in _OPENMMLAB:
            return SkippedObject
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a training checkpoint")


def load_training_checkpoint(path: Path) -> Any:
    """``torch.load`` of ``path`` through :class:`_TrainingUnpickler`; raises ``pickle.UnpicklingError`` for a pickle
    that needs anything else."""
    import torch

    module = types.SimpleNamespace(
        __name__="featvis_training_pickle", Unpickler=_TrainingUnpickler, load=_load, dumps=pickle.dumps
    )
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)


def _load(file: Any, **kwargs: Any) -> Any:
    """``pickle.load`` with :class:`_TrainingUnpickler` (torch's legacy, non-zip format)."""
    return _TrainingUnpickler(file, **kwargs).load()
