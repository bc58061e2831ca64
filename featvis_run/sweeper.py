"""``hydra/sweeper=featvis`` (the default): Hydra's basic sweeper, composing each job's config once.

Hydra's basic sweeper composes every job's config to validate the batch before launching it, and the launcher
composes it again to run it: two compositions per job, each about a quarter of a second, which is most of what a
cached sweep job costs. This sweeper keeps the configs it composed while validating and hands the launcher a copy
(the launcher writes the job's id and number into it), so each job is composed once. Validation is unchanged: a bad
override still fails before any job runs. Launchers in other processes (joblib, SLURM) compose in the launching
process too, so they gain the same.
"""

from __future__ import annotations

import copy
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_loader import ConfigLoader
from omegaconf import DictConfig, OmegaConf

__all__ = ["FeatvisSweeper"]


class _ComposedOnce:
    """``load_sweep_config`` of a config loader, remembered by the job's overrides."""

    def __init__(self, loader: ConfigLoader):
        self.original = loader.load_sweep_config
        self.composed: dict[tuple[str, ...], DictConfig] = {}

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = tuple(sweep_overrides)
        if key not in self.composed:
            self.composed[key] = self.original(master_config, list(sweep_overrides))
        config = copy.deepcopy(self.composed[key])
        OmegaConf.copy_cache(from_config=self.composed[key], to_config=config)  # resolved timestamps stay the same
        return config


class FeatvisSweeper(BasicSweeper):
    """:class:`BasicSweeper` whose jobs are composed once (see the module docstring)."""

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        loader = hydra_context.config_loader
        if not isinstance(loader.load_sweep_config, _ComposedOnce):
            loader.load_sweep_config = _ComposedOnce(loader)
