"""Turning reduced maps into pictures with numpy and OpenCV: colour, overlays, grids, predictions. No file I/O."""
