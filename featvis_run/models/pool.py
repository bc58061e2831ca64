"""Built models kept for reuse within one process: Hydra's basic launcher runs a sweep's jobs one after another
in the same process, and a job that asks for a model built by an earlier one gets it back instead of a rebuild."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable

from featvis_run.models.base import BuiltModel

__all__ = ["ModelPool", "shared_pool"]


class ModelPool:
    """The last ``keep`` built models, by plan identity (least recently used dropped first)."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self._models: OrderedDict[str, BuiltModel] = OrderedDict()

    def __len__(self) -> int:
        return len(self._models)

    def get(self, identity: str, build: Callable[[], BuiltModel]) -> tuple[BuiltModel, bool]:
        """The model of ``identity``, built with ``build()`` unless kept; returns (model, reused)."""
        if identity in self._models:
            self._models.move_to_end(identity)
            return self._models[identity], True
        model = build()
        self._models[identity] = model
        while len(self._models) > self.keep:
            self._models.popitem(last=False)
        return model, False

    def clear(self) -> None:
        """Forget every kept model."""
        self._models.clear()


@functools.cache
def shared_pool() -> ModelPool:
    """The pool of this process (one per process: jobs of an in-process sweep share it)."""
    return ModelPool()
