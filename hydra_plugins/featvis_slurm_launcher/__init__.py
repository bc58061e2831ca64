"""Registers featvis-run's SLURM launcher with Hydra (``hydra/launcher=slurm``, conf/hydra/launcher/slurm.yaml).

Hydra instantiates launchers only from classes defined in the ``hydra_plugins`` namespace package (it scans it at
start-up), so the launcher lives in ``featvis_run.slurm_launcher`` and is named here. ``hydra_plugins`` itself has
no ``__init__.py``: it is a namespace shared with the other Hydra plugins.

The launcher is built on hydra-submitit-launcher, an optional dependency (``featvis-run[launchers]``). Without it,
Hydra's start-up scan would print an "Error importing ... Plugin is incompatible" warning on every command, so a
stand-in is registered instead that fails only when ``hydra/launcher=slurm`` is chosen, saying what to install.
"""

from typing import Any

try:
    from featvis_run.slurm_launcher import FeatvisSlurmLauncher as _FeatvisSlurmLauncher
except ModuleNotFoundError as _err:  # hydra-submitit-launcher (or submitit) is not installed
    if not (_err.name or "").startswith(("hydra_plugins.hydra_submitit_launcher", "submitit")):
        raise
    _FeatvisSlurmLauncher = None

__all__ = ["FeatvisSlurmLauncher"]

if _FeatvisSlurmLauncher is not None:

    class FeatvisSlurmLauncher(_FeatvisSlurmLauncher):
        """See :mod:`featvis_run.slurm_launcher`."""

else:
    from hydra.plugins.launcher import Launcher

    _MISSING = (
        "hydra/launcher=slurm needs hydra-submitit-launcher, which is not installed: "
        "pip install 'featvis-run[launchers]'"
    )

    class FeatvisSlurmLauncher(Launcher):  # type: ignore[no-redef]
        """Stand-in registered when hydra-submitit-launcher is missing: choosing it says what to install."""

        def __init__(self, **_params: Any) -> None:
            raise ImportError(_MISSING)

        def setup(self, **_kwargs: Any) -> None:  # abstract in Launcher; never reached
            raise ImportError(_MISSING)

        def launch(self, *_args: Any, **_kwargs: Any) -> Any:
            raise ImportError(_MISSING)
