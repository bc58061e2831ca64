"""Command-line checks before Hydra runs: a misspelt key or group option, a value of the wrong type or outside its
allowed set, a sweep without ``-m``, and ``hydra/launcher=slurm`` where SLURM is not installed, each as one line
naming the value, the valid ones and a fix (exit code 2), where Hydra would print several lines (or a traceback) and
exit with 1.

The overrides are parsed with Hydra's own override parser, keys are looked up in the typed schema
(:mod:`featvis_run.schema`) and group options in ``conf/``; a value is checked by assigning it to a node of its
dataclass, exactly as Hydra's composition will. Anything not understood here (``+key``, ``~key``, ``hydra.*``, keys
below a free-form dict, interpolations, ``glob``/``range``/``interval`` sweeps, a parse error) is left to Hydra.
"""

from __future__ import annotations

import dataclasses
import difflib
import shutil
import sys
import types
import typing
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, Union

from featvis_run.cli_args import is_multirun
from featvis_run.devices import device_problem
from featvis_run.schema import Config

__all__ = ["check_command_line", "exit_on_bad_command_line", "slurm_missing"]

CONF_DIR = Path(__file__).resolve().parent / "conf"
# Hydra flags after which the config is not featvis-run's own, or the arguments are not overrides
_SKIP_FLAGS = ("-h", "--help", "--hydra-help", "--version", "-sc", "--shell-completion", "-cd", "--config-dir",
               "-cn", "--config-name", "-cp", "--config-path", "--experimental-rerun")  # fmt: skip
_SLURM_LAUNCHERS = ("slurm", "submitit_slurm")
_MISSING = object()


def slurm_missing(launcher: str = "slurm") -> str | None:
    """The one-line error when SLURM's ``sbatch`` or ``srun`` is not on PATH (no SLURM here), else None."""
    absent = [cmd for cmd in ("sbatch", "srun") if shutil.which(cmd) is None]
    if not absent:
        return None
    return (
        f"hydra/launcher={launcher} needs SLURM, but {' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} "
        "not on PATH (no SLURM on this machine); run the sweep here instead: drop hydra/launcher="
        f"{launcher} (one job after another) or use hydra/launcher=parallel (joblib, jobs side by side)"
    )


@cache
def _group_options(group: str) -> tuple[str, ...]:
    folder = CONF_DIR / group
    return tuple(sorted(p.stem for p in folder.glob("*.yaml"))) if folder.is_dir() else ()


@cache
def _groups() -> frozenset[str]:
    return frozenset(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return tp


@cache
def _keys() -> tuple[str, ...]:
    """Every dotted key of the schema (nested dataclasses walked), for "did you mean"."""
    out: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        for name, tp in typing.get_type_hints(cls).items():
            out.append(prefix + name)
            inner = _unwrap(tp)
            if dataclasses.is_dataclass(inner):
                walk(inner, f"{prefix}{name}.")

    walk(Config, "")
    return tuple(out)


def _field(key: str) -> tuple[type, str, Any] | None | object:
    """(dataclass, field name, field type) of a dotted key; None when it lies below a free-form field (a dict,
    ``Any``, a list) or names a whole section; ``_MISSING`` when no such key exists."""
    cls: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return _MISSING
        tp = _unwrap(hints[part])
        if i == len(parts) - 1:
            return None if dataclasses.is_dataclass(tp) else (cls, part, tp)
        if not dataclasses.is_dataclass(tp):
            return None  # below a dict / Any / list field: Hydra decides
        cls = tp
    return None


def _close(word: str, choices: typing.Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _shown(value: Any) -> str:
    return repr(value.value if isinstance(value, Enum) else value)


def _value_problem(key: str, owner: type, name: str, tp: Any, value: Any) -> str | None:
    """Why ``key=value`` cannot be assigned to its typed field (as Hydra would refuse it), or None."""
    if isinstance(value, str) and "${" in value:
        return None  # an interpolation: resolved later
    if name == "device" and owner.__name__ == "ModelConfig" and value is not None:
        return device_problem(key, value)
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    node = OmegaConf.structured(owner)
    try:
        setattr(node, name, value)
        return None
    except OmegaConfBaseException as err:
        detail = " ".join(str(err).split("\n")[0].split())
    default = getattr(owner(), name, None)  # every schema dataclass has defaults (MISSING is "???")
    if isinstance(tp, type) and issubclass(tp, Enum):
        valid = [m.value for m in tp]
        fix = _close(str(value), valid) or (default.value if isinstance(default, Enum) else valid[0])
        return f"{key}={_shown(value)} is not one of {', '.join(valid)}; use {key}={fix}"
    what = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}.get(tp)
    if what is None:
        return f"{key}={_shown(value)} is not valid here ({detail})"
    example = f"; e.g. {key}={str(default).lower() if tp is bool else default}" if default is not None else ""
    return f"{key}={_shown(value)} is not {what}{example}"


def _values(override: Any) -> list[Any] | None:
    """The values an override gives (one, or each of a choice sweep); None for glob/range/interval sweeps."""
    from hydra.core.override_parser.types import ChoiceSweep

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return list(value.list)
    return None if override.is_sweep_override() else [value]


def _sweep_without_m(override: Any, as_list: str = "") -> str:
    """A sweep (``topk=4,8``, ``choice(...)``, ``range(...)``) given without ``-m``."""
    alternative = f", or write a list as {as_list}" if as_list else ""
    return (
        f"{override.input_line} gives several values, which is a sweep: add -m to run one job per value "
        f"(featvis-run -m ... {override.input_line}), or give one value{alternative}"
    )


def _group_problem(group: str, package: str | None, override: Any, multirun: bool) -> str | None:
    if override.is_sweep_override() and not multirun:
        return _sweep_without_m(override)
    options = _group_options(group)
    where = f"{group}@{package}" if package else group
    for value in _values(override) or []:
        if value is None or (isinstance(value, str) and "${" in value):
            continue
        if (CONF_DIR / group / f"{value}.yaml").is_file():  # also an option in a subfolder (group=sub/name)
            continue
        close = _close(str(value), options)
        hint = f"did you mean {where}={close}? " if close else ""
        return f"{where}={_shown(value)} is not a {group} option; {hint}(options: {', '.join(options)})"
    return None


def _key_problem(key: str, override: Any, multirun: bool) -> str | None:
    found = _field(key)
    if found is _MISSING:
        parent = key.rpartition(".")[0]
        siblings = [k for k in _keys() if k.rpartition(".")[0] == parent]
        # a misspelt last part is looked for among its siblings (output.alhpa); else among every key and group
        if parent in _keys():
            last = _close(key.rpartition(".")[2], [k.rpartition(".")[2] for k in siblings])
            close = f"{parent}.{last}" if last else None
        else:
            close = _close(key, list(_keys()) + sorted(_groups()))
        value = override.input_line.partition("=")[2]
        if close:
            return f"{override.input_line}: there is no option {key}; did you mean {close}={value}?"
        valid = [k.rpartition(".")[2] for k in siblings]
        listed = f"options{' of ' + parent if parent else ''}: {', '.join(valid)}"
        return f"{override.input_line}: there is no option {key} ({listed})"
    if found is None:
        return None
    owner, name, tp = typing.cast(tuple, found)
    if override.is_sweep_override() and not multirun:
        scalar = tp in (int, float, bool, str) or (isinstance(tp, type) and issubclass(tp, Enum))
        return _sweep_without_m(override, "" if scalar else f"{key}=[{override.input_line.partition('=')[2]}]")
    for value in _values(override) or []:
        problem = _value_problem(key, owner, name, tp, value)
        if problem:
            return problem
    return None


def check_command_line(argv: list[str]) -> str | None:
    """The one-line error for the first override of ``argv`` (as prepared by :func:`cli_args.prepare_argv`) that
    cannot work, or None when every one is fine or left to Hydra."""
    if any(a.partition("=")[0] in _SKIP_FLAGS for a in argv):
        return None
    args = [a for a in argv if (not a.startswith("-") and "=" in a) or a.startswith("~")]
    if not args:
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:
        return None  # Hydra reports the syntax error itself
    multirun = is_multirun(argv)
    # a search path of the user's own (hydra.searchpath=[...]) may add group options: those are Hydra's to check
    own_options = any(o.key_or_group.startswith("hydra.searchpath") for o in overrides)
    for o in overrides:
        key = o.key_or_group
        if o.is_delete() or o.is_force_add():
            continue
        if key == "hydra/launcher" and multirun and o.value() in _SLURM_LAUNCHERS:
            problem = slurm_missing(str(o.value()))
        elif key == "hydra" or key.startswith(("hydra.", "hydra/")):
            continue
        elif key in _groups():
            problem = None if own_options else _group_problem(key, o.package, o, multirun)
        elif o.is_add() or "/" in key:
            continue
        else:
            problem = _key_problem(key, o, multirun)
        if problem:
            return problem
    return None


def exit_on_bad_command_line(argv: list[str]) -> None:
    """Print :func:`check_command_line`'s error as ``featvis-run: error: ...`` and exit with code 2, if there is one."""
    problem = check_command_line(argv)
    if problem:
        print(f"featvis-run: error: {problem}", file=sys.stderr)
        sys.exit(2)
