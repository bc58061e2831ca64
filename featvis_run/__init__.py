"""featvis-run: config-driven feature-map visualization for OpenMMLab models (mmdet detectors, mmseg segmentors).

Importing the package is cheap: torch and mmdet are imported only by the modules that need them.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
