"""The command line before Hydra parses it: shorthands, and quoting path values so that any path works unquoted.

Hydra's override grammar refuses ``=``, parentheses and non-ASCII letters in unquoted values, with lexer errors that
do not name the argument. Values of the keys that hold paths are quoted for it here (a comma still separates sweep
values, as in ``-m model.checkpoint=a.pth,b.pth``); a value that is already quoted, a list ``[...]``, a sweep
function such as ``glob(...)``, an interpolation or ``null`` is left as it is.
"""

from __future__ import annotations

import re

__all__ = ["PATH_KEYS", "expand_shorthands", "is_multirun", "option_value", "prepare_argv", "quote_path_value"]

#: config keys whose values are file or folder paths
PATH_KEYS = frozenset(
    {
        "image",
        "images.paths",
        "images.annotations",
        "images.dataset",
        "output.dir",
        "cache.dir",
        "checkpoints",
        "recorder.file",
        "model.checkpoint",
        "model_a.checkpoint",
        "model_b.checkpoint",
        "model.mmdet_config",
        "model_a.mmdet_config",
        "model_b.mmdet_config",
        "model.config",
        "model_a.config",
        "model_b.config",
    }
)
_LEAVE = re.compile(r"^(['\"\[{]|\$\{|null$|(choice|range|interval|glob|sort|shuffle|tag|str|int|float|bool)\()")


def is_multirun(argv: list[str]) -> bool:
    return "-m" in argv or "--multirun" in argv


def expand_shorthands(argv: list[str]) -> list[str]:
    """``images=X`` is short for ``images.paths=X`` (``images.limit``/``images.shard`` stay as they are)."""
    return [f"images.paths={a[len('images=') :]}" if a.startswith("images=") else a for a in argv]


def quote_path_value(value: str) -> str:
    """``value`` as Hydra override text: each comma-separated part single-quoted (quotes and the backslashes before
    them escaped), unless it is already quoted, a list, a sweep function, an interpolation or null."""
    if not value or _LEAVE.match(value):
        return value

    def quote(part: str) -> str:
        part = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", part)
        part = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, part)
        return f"'{part}'"

    return ",".join(quote(part) for part in value.split(","))


def _key(arg: str) -> str:
    return arg.partition("=")[0].lstrip("+~")


def prepare_argv(argv: list[str]) -> list[str]:
    """Shorthands expanded, path values quoted, and ``-m``/``--multirun`` moved first (Hydra's parser refuses
    overrides after it when it comes last); other arguments unchanged."""
    flags = [a for a in argv if a in ("-m", "--multirun")]
    out = flags[:1]
    for arg in expand_shorthands([a for a in argv if a not in ("-m", "--multirun")]):
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") in PATH_KEYS:
            arg = f"{key}={quote_path_value(value)}"
        out.append(arg)
    return out


def option_value(argv: list[str], name: str) -> str | None:
    """The raw value of ``name=...`` on the command line (the last one wins), unquoted; None if absent."""
    found = None
    for arg in argv:
        if _key(arg) == name and "=" in arg:
            found = arg.partition("=")[2]
    if found and len(found) >= 2 and found[0] == found[-1] and found[0] in "'\"":
        found = found[1:-1]
    return found
