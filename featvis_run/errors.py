"""User-facing errors: each names the offending value and how to fix it."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FeatvisError",
    "InputError",
    "ModelError",
    "OutputError",
    "RecordingError",
    "RunInterrupted",
    "TargetNotFound",
    "error_line",
]


class FeatvisError(Exception):
    """A user error. The CLI prints its message on one line and exits with code 2."""

    exit_code = 2


class ConfigError(FeatvisError):
    """A configuration value is impossible (out of range, inconsistent with another value)."""


class InputError(FeatvisError):
    """An input file (image, output folder) is missing, unreadable or not what it should be."""


class ModelError(FeatvisError):
    """The model cannot be built or its checkpoint cannot be loaded."""


class RecordingError(FeatvisError):
    """A recorder or mapping names a layer, call or element that does not exist."""


class OutputError(FeatvisError):
    """An output file cannot be written (full disk, permissions): the run stops with one line."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: carries how far it got, so the entry point can say so in one line and exit 130."""

    def __init__(self, done: int, total: int, resume_hint: str):
        super().__init__(f"interrupted after {done} of {total} images; {resume_hint}")
        self.done, self.total = done, total


class TargetNotFound(FeatvisError):
    """``target=...`` matches no detection of an image (``det:5`` with 3 detections, a class not detected)."""


def error_line(err: BaseException) -> str:
    """An exception from a library as one line for a user error: its type and message, whitespace collapsed (a
    syntax error with its line number)."""
    if isinstance(err, SyntaxError) and err.msg:
        where = f" at line {err.lineno}" if err.lineno else ""
        return f"{type(err).__name__}: {err.msg}{where}"
    text = " ".join(str(err).split())
    if isinstance(err, KeyError) and len(err.args) == 1:
        text = repr(err.args[0])
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
