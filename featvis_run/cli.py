"""The ``featvis-run`` console script: a thin Hydra entry point.

Only Hydra and the schema are imported at start-up, so ``featvis-run --help`` stays fast; torch and mmdet are
imported when a run starts. User errors print one line and exit with code 2 (``debug=true`` shows the traceback).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from featvis_run.errors import FeatvisError
from featvis_run.schema import Config, register_configs

__all__ = ["main"]

register_configs()

# An absolute path: works from a source checkout, an editable install and a regular wheel (conf/ is shipped inside).
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def _out_dir(cfg: Config) -> Path:
    if cfg.output.dir:
        return Path(cfg.output.dir).expanduser()
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _main(dcfg: DictConfig) -> None:
    debug = bool(dcfg.get("debug", False))
    try:
        cfg: Config = OmegaConf.to_object(dcfg)  # typed dataclasses from here on
        resolved = OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True)
        from featvis_run.runner import run
        from featvis_run.summary import print_layers, print_summary

        out_dir = _out_dir(cfg)
        result = run(cfg, out_dir, resolved)
        if isinstance(result, list):
            print_layers(result, out_dir)
            return
        print_summary(result)
        if not result.ok:
            sys.exit(1)
    except FeatvisError as err:
        if debug:
            raise
        print(f"featvis-run: error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


def _expand_shorthands(argv: list[str]) -> list[str]:
    """``images=X`` is short for ``images.paths=X`` (``images.limit``/``images.shard`` stay as they are)."""
    return [f"images.paths={a[len('images=') :]}" if a.startswith("images=") else a for a in argv]


def main() -> None:
    """Console-script entry point."""
    sys.argv[1:] = _expand_shorthands(sys.argv[1:])
    # mmengine imports pkg_resources to resolve `mmdet::` config bases; its deprecation notice is noise here.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    try:
        _main()
    except BrokenPipeError:  # e.g. `featvis-run --help | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
