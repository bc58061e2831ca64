"""The ``featvis-run`` console script: a thin Hydra entry point.

Only Hydra and the schema are imported at start-up, so ``featvis-run --help`` stays fast; torch and mmdet are
imported when a run starts. User errors print one line and exit with code 2 (``debug=true`` shows the traceback).
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from featvis_run.cli_args import is_multirun, option_value, prepare_argv
from featvis_run.cli_checks import exit_on_bad_command_line
from featvis_run.errors import ConfigError, FeatvisError, RunInterrupted
from featvis_run.schema import Config, Mode, register_configs

__all__ = ["main"]

register_configs()

# An absolute path: works from a source checkout, an editable install and a regular wheel (conf/ is shipped inside).
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")


def _hydra_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def _out_dir(cfg: Config, multirun: bool) -> Path:
    if cfg.output.dir and multirun:
        raise ConfigError(
            f"output.dir={cfg.output.dir!r} would collect every job of the sweep in one folder; "
            f"give the sweep's folder as hydra.sweep.dir={cfg.output.dir} instead (one subfolder per job)"
        )
    if cfg.output.dir:
        return Path(cfg.output.dir).expanduser()
    return _hydra_dir()


def _typed(dcfg: DictConfig) -> Config:
    """The typed config; a value left missing (``???``) is a one-line error naming the key and an example."""
    import re

    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    try:
        return OmegaConf.to_object(dcfg)
    except (MissingMandatoryValue, InterpolationToMissingValueError) as err:
        found = re.search(r"Missing mandatory value: ([\w.]+)", str(err))
        key = found.group(1) if found else (getattr(err, "full_key", "") or "a value")
        packaged = "a config packaged with the installed library (e.g. {}) or a path to yours"
        example = {
            "mmdet_config": packaged.format("atss/atss_r50_fpn_1x_coco.py"),
            "config": packaged.format("segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py for mmseg"),
        }.get(key.rsplit(".", 1)[-1], "a value")
        raise ConfigError(f"{key} has no value; set {key}=... to {example}") from None


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_job_error(out_dir: Path, message: str) -> None:
    """In a sweep a job never raises (that would stop the sweep): its error goes to ``error.json``."""
    from featvis_run.store.outputs import write_json

    with contextlib.suppress(OSError):
        write_json(out_dir / "error.json", {"error": message}, overwrite=True)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _main(dcfg: DictConfig) -> None:
    debug = bool(dcfg.get("debug", False))
    multirun = _in_multirun()
    out_dir = _hydra_dir()  # where a sweep job's error.json goes if the run never gets to its own folder
    try:
        cfg = _typed(dcfg)  # typed dataclasses from here on
        resolved = OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True)
        out_dir = _out_dir(cfg, multirun)
        if cfg.mode is Mode.layers:
            from featvis_run.experiments.layers import list_model_layers
            from featvis_run.report.summary import print_layers

            layers, notes = list_model_layers(cfg, out_dir)
            print_layers(layers, out_dir, notes)
            return
        from featvis_run.experiments.run import run_experiment
        from featvis_run.report.summary import print_job_line, print_summary

        result = run_experiment(cfg, out_dir, resolved)
        print_job_line(result) if multirun else print_summary(result)
        if not result.ok and not multirun:
            sys.exit(1)
    except FeatvisError as err:
        if debug:
            raise
        print(f"featvis-run: error: {err}", file=sys.stderr)
        if multirun:
            _record_job_error(out_dir, str(err))
            return
        sys.exit(err.exit_code)
    except Exception as err:
        if not multirun or debug:
            raise
        import traceback

        traceback.print_exc()
        _record_job_error(out_dir, f"{type(err).__name__}: {err}")


def _check_output_dir_arg(argv: list[str]) -> str | None:
    """Hydra creates its run folder (``output.dir`` when given) before the job starts and fails with a traceback
    when it cannot: check a command-line ``output.dir=`` first and return the one-line error, if any."""
    value = option_value(argv, "output.dir")
    if is_multirun(argv) or value in (None, "", "null"):
        return None  # sweep jobs refuse output.dir themselves
    path = Path(value).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:
        reason = err.strerror or err
        return f"output.dir={str(path)!r} is not a writable folder ({reason}); choose another with output.dir=..."
    return None


def _check_same_settings(raw: list[str], argv: list[str]) -> str | None:
    """The run folder a command-line ``output.dir`` names, checked before Hydra writes ``.hydra/`` and its log there:
    a folder featvis-run did not make is used only if empty or if a run would only add files to it, and one that
    holds a run with other settings is refused, both unless ``output.overwrite=true``. An accepted folder is marked
    as a run folder (so Hydra's files in it are not mistaken for the user's). Returns the one-line error, if any."""
    from featvis_run.store.run_folder import check_settings, claim_folder, is_run_folder

    value = option_value(raw, "output.dir")
    if is_multirun(argv) or value in (None, "", "null"):
        return None
    out_dir = Path(value).expanduser()
    overwrite = str(option_value(raw, "output.overwrite")).lower() == "true"
    try:
        if not is_run_folder(out_dir):
            claim_folder(out_dir, overwrite)
            return None
        from hydra import compose, initialize_config_dir

        overrides = [a for a in argv if not a.startswith("-") and not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
        try:
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                dcfg = compose(config_name="config", overrides=overrides)
            resolved = OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True)
        except Exception:
            return None  # Hydra reports a bad override itself, with its own message
        check_settings(out_dir, resolved, overwrite)
        claim_folder(out_dir, overwrite)  # an earlier version's run folder gets its marker
    except FeatvisError as err:
        return str(err)
    return None


def main() -> None:
    """Console-script entry point: prepares the command line (shorthands, quoted paths), checks the output folder,
    runs Hydra, and turns Ctrl-C into one line and exit code 130."""
    raw = sys.argv[1:]
    sys.argv[1:] = prepare_argv(raw)
    exit_on_bad_command_line(sys.argv[1:])  # keys, values, sweeps without -m, SLURM (featvis_run.cli_checks)
    problem = _check_output_dir_arg(raw) or _check_same_settings(raw, sys.argv[1:])
    if problem:
        print(f"featvis-run: error: {problem}", file=sys.stderr)
        sys.exit(2)
    # mmengine imports pkg_resources to resolve `mmdet::` config bases; its deprecation notice is noise here.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    try:
        _main()
    except BrokenPipeError:  # e.g. `featvis-run --help | head`
        sys.stderr.close()
    except RunInterrupted as err:
        print(f"featvis-run: {err}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("featvis-run: interrupted before any image was finished; nothing was written", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
