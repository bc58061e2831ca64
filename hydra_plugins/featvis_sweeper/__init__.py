"""Registers featvis-run's sweeper with Hydra (``hydra/sweeper=featvis``, the default; conf/hydra/sweeper/featvis.yaml).

Hydra instantiates sweepers only from classes defined in the ``hydra_plugins`` namespace package, so the sweeper
lives in ``featvis_run.sweeper`` and is named here.
"""

from featvis_run.sweeper import FeatvisSweeper as _FeatvisSweeper

__all__ = ["FeatvisSweeper"]


class FeatvisSweeper(_FeatvisSweeper):
    """See :mod:`featvis_run.sweeper`."""
