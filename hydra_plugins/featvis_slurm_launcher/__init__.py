"""Registers featvis-run's SLURM launcher with Hydra (``hydra/launcher=slurm``, conf/hydra/launcher/slurm.yaml).

Hydra instantiates launchers only from classes defined in the ``hydra_plugins`` namespace package (it scans it at
start-up), so the launcher lives in ``featvis_run.slurm_launcher`` and is named here. ``hydra_plugins`` itself has
no ``__init__.py``: it is a namespace shared with the other Hydra plugins.
"""

from featvis_run.slurm_launcher import FeatvisSlurmLauncher as _FeatvisSlurmLauncher

__all__ = ["FeatvisSlurmLauncher"]


class FeatvisSlurmLauncher(_FeatvisSlurmLauncher):
    """See :mod:`featvis_run.slurm_launcher`."""
