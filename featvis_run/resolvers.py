"""The OmegaConf resolvers ``conf/`` uses: ``featvis.or``, ``featvis.stem``, ``featvis.unique``, ``featvis.run_dir``.

``featvis.unique`` makes the default run and sweep folders unique: it creates the folder atomically, adding ``-2``,
``-3``, ... when another run started in the same second already has it. It is registered with ``use_cache``, so a
run resolves it once, and Hydra hands the resolved value on to a sweep's jobs, in-process or not.
"""

from __future__ import annotations

import itertools
from pathlib import Path

__all__ = ["config_stem", "register_resolvers", "run_dir", "unique_dir"]


def config_stem(path: str) -> str:
    """A model's name from its config reference: the file stem without a trailing ``_config``
    (``retinanet/retinanet_r50_fpn_2x_coco.py`` -> ``retinanet_r50_fpn_2x_coco``)."""
    name = str(path).replace("\\\\", "/").rstrip("/").rsplit("/", 1)[-1].rsplit("::", 1)[-1]
    return name.removesuffix(".py").removesuffix("_config")


def unique_dir(base: str) -> str:
    """``base``, or ``base-2``, ``base-3``, ...: the first that did not exist, created now (atomically)."""
    path = Path(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count(1):
        candidate = path if n == 1 else path.with_name(f"{path.name}-{n}")
        try:
            candidate.mkdir()
            return str(candidate)
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def run_dir(output_dir: str | None, default: str) -> str:
    """A single run's folder: ``output.dir`` when given, else a unique dated folder."""
    return output_dir if output_dir else unique_dir(default)


def register_resolvers() -> None:
    """Register the resolvers (idempotent)."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("featvis.or", lambda value, default: value or default, replace=True)
    OmegaConf.register_new_resolver("featvis.stem", config_stem, replace=True)
    OmegaConf.register_new_resolver("featvis.unique", unique_dir, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("featvis.run_dir", run_dir, replace=True, use_cache=True)
