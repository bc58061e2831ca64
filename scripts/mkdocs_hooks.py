"""MkDocs hooks (mkdocs.yml ``hooks:``): write the generated reference pages before every build, so that they are
never stale (scripts/gen_reference.py; a page is rewritten only when its text changed, so ``mkdocs serve`` does
not rebuild in a loop)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

__all__ = ["on_pre_build"]

_SCRIPT = Path(__file__).resolve().parent / "gen_reference.py"


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """Generate docs/reference/configuration.md and manifest.md; fail the build on an undocumented key."""
    spec = importlib.util.spec_from_file_location("gen_reference", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_reference"] = module
    spec.loader.exec_module(module)
    if module.main([]) != 0:
        raise PluginError("a config or manifest key has no description (see above)")
