"""The ``featvis-run`` console script. ``featvis-run --help`` is served from a cached copy of Hydra's help (it
composes every config group to list them, which takes about a second); anything else runs the Hydra app in
:mod:`featvis_run.cli`.

The copy lives in ``$XDG_CACHE_HOME/featvis-run/`` (default ``~/.cache``) under a key made of the package version,
the Python executable and the size and modification time of every file in ``conf/``: editing a config, or
installing another version, makes a new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
from pathlib import Path

__all__ = ["main"]

_CONF = Path(__file__).resolve().parent / "conf"


def _help_path() -> Path:
    from featvis_run import __version__

    parts = [__version__, sys.executable]
    for folder, _, files in sorted(os.walk(_CONF, followlinks=True)):
        for name in sorted(files):
            st = os.stat(os.path.join(folder, name))
            parts.append(f"{os.path.relpath(os.path.join(folder, name), _CONF)}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "featvis-run" / f"help-{key}.txt"


def _render_help() -> str:
    """Hydra's own ``--help`` text, captured."""
    from featvis_run.cli import main as run

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        run()
    return buffer.getvalue()


def main() -> None:
    """Console-script entry point."""
    if sys.argv[1:] not in (["--help"], ["-h"]):
        from featvis_run.cli import main as run

        run()
        return
    path = _help_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        text = _render_help()
        with contextlib.suppress(Exception):  # a read-only home only costs the next call a composition
            from featvis_run.store.outputs import write_bytes

            write_bytes(path, text.encode("utf-8"))
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `featvis-run --help | head`
        sys.stderr.close()


if __name__ == "__main__":
    main()
