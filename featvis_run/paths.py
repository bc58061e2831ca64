"""Resolving ``pkg://featvis_run/...`` references to files shipped inside the installed package."""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_CHECKPOINT", "DEMO_SCENE", "PACKAGE_DIR", "resolve_package_path"]

PACKAGE_DIR = Path(__file__).resolve().parent
#: the shipped demo model's weights and the demo scene
DEMO_CHECKPOINT = PACKAGE_DIR / "assets" / "demo_shapes.pth"
DEMO_SCENE = PACKAGE_DIR / "assets" / "demo_scene.png"
_PREFIX = "pkg://featvis_run/"


def resolve_package_path(ref: str) -> Path:
    """``pkg://featvis_run/assets/x`` -> the file inside the installed package; other strings -> a user path."""
    if ref.startswith(_PREFIX):
        return PACKAGE_DIR / ref[len(_PREFIX) :]
    return Path(ref).expanduser()
