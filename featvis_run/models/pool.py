"""Models kept for reuse within one process: Hydra's basic launcher runs a sweep's jobs one after another in the
same process, and a job that asks for a model planned or built by an earlier one gets it back instead of reading
its config (and hashing its checkpoint) or building it again."""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable

from featvis_run.models.base import BuiltModel, ModelPlan

__all__ = ["ModelPool", "shared_pool"]


class ModelPool:
    """The last ``keep`` built models, by plan identity, and the last plans, by what they were planned from
    (least recently used dropped first)."""

    def __init__(self, keep: int = 2, keep_plans: int = 8):
        self.keep, self.keep_plans = keep, keep_plans
        self._models: OrderedDict[str, BuiltModel] = OrderedDict()
        self._plans: OrderedDict[Hashable, ModelPlan] = OrderedDict()

    def plan(self, key: Hashable, make: Callable[[], ModelPlan]) -> ModelPlan:
        """The plan made from ``key`` (a model config and the files it names, as they are now), made with
        ``make()`` unless kept."""
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        plan = make()
        self._plans[key] = plan
        while len(self._plans) > self.keep_plans:
            self._plans.popitem(last=False)
        return plan

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
        """Forget every kept model and plan."""
        self._models.clear()
        self._plans.clear()


@functools.cache
def shared_pool() -> ModelPool:
    """The pool of this process (one per process: jobs of an in-process sweep share it)."""
    return ModelPool()
