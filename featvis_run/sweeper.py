"""``hydra/sweeper=featvis`` (the default): Hydra's basic sweeper, composing each job's config once.

Hydra's basic sweeper composes every job's config to validate the batch before launching it, and the launcher
composes it again to run it: two compositions per job, each about a quarter of a second, which is most of what a
cached sweep job costs. This sweeper keeps the configs it composed while validating and hands the launcher a copy
(the launcher writes the job's id and number into it), so each job is composed once. Validation is unchanged: a bad
override still fails before any job runs. Launchers in other processes (joblib, SLURM) compose in the launching
process too, so they gain the same.

Job folders (``hydra.sweep.subdir`` = ``${hydra.job.num}_${hydra.job.override_dirname}``) are named by what the
sweep varies: ``override_dirname`` keeps only the swept keys (a value list such as ``reducer=a,b``), so
``-m reducer=a,b topk=8`` makes ``0_reducer=a`` and ``1_reducer=b``. A sweep that varies nothing keeps every
override in the name. ``.hydra/overrides.yaml`` still lists every override of the job.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = ["FeatvisSweeper", "swept_dirname"]


def swept_dirname(
    job_overrides: Sequence[str], swept_keys: Iterable[str], exclude_keys: Iterable[str], item_sep: str, kv_sep: str
) -> str:
    """Hydra's ``override_dirname`` of one job made of its swept overrides only (sorted, like Hydra's); every
    override (still minus ``exclude_keys``) when nothing is swept."""
    swept, excluded = set(swept_keys), set(exclude_keys)
    keyed = [(line.split("=", 1)[0].lstrip("+~"), line) for line in job_overrides]
    kept = [line for key, line in keyed if key not in excluded and (not swept or key in swept)]
    return re.sub("=", kv_sep, item_sep.join(sorted(kept)))


class _ComposedOnce:
    """``load_sweep_config`` of a config loader, remembered by the job's overrides."""

    def __init__(self, loader: ConfigLoader):
        self.original = loader.load_sweep_config
        self.composed: dict[tuple[str, ...], DictConfig] = {}
        self.swept_keys: frozenset[str] = frozenset()

    def __call__(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = tuple(sweep_overrides)
        if key not in self.composed:
            composed = self.original(master_config, list(sweep_overrides))
            naming = composed.hydra.job.config.override_dirname
            with open_dict(composed.hydra.job):
                composed.hydra.job.override_dirname = swept_dirname(
                    sweep_overrides, self.swept_keys, naming.exclude_keys, naming.item_sep, naming.kv_sep
                )
            self.composed[key] = composed
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

    def sweep(self, arguments: list[str]) -> Any:
        """Note which keys the sweep varies (for the job folder names), then sweep as Hydra's basic sweeper."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        parsed = parser.parse_overrides([*self._parse_config(), *arguments])
        loader = self.hydra_context.config_loader.load_sweep_config
        if isinstance(loader, _ComposedOnce):
            loader.swept_keys = frozenset(o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override())
        return super().sweep(arguments)
