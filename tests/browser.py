"""Driving Debian's chromium through Playwright (from PyPI, never ``playwright install``): a session browser, and a
page opened from ``file://`` that records console messages and every request. Tests skip, with the reason, when
chromium or Playwright is absent."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("FEATVIS_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


@dataclass
class OpenPage:
    """A page and what it did: console messages (type, text), page errors and requested URLs."""

    page: Any
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def eval(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)


class Browser:
    """A persistent chromium context with a fresh user-data-dir; :meth:`open` loads a page from a file."""

    def __init__(self, playwright: Any, data_dir: str):
        self.context = playwright.chromium.launch_persistent_context(
            data_dir,
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            viewport={"width": 1400, "height": 1000},
        )

    def open(self, path: Path, width: int = 1400, height: int = 1000) -> OpenPage:
        page = self.context.new_page()
        page.set_viewport_size({"width": width, "height": height})
        opened = OpenPage(page)
        page.on("console", lambda m: opened.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: opened.errors.append(str(e)))
        page.on("request", lambda r: opened.requests.append(r.url))
        page.goto(path.resolve().as_uri())
        page.wait_for_function("window.featvis && window.featvis.ready === true", timeout=20000)
        page.wait_for_load_state("load")
        return opened


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    data_dir = tempfile.mkdtemp(prefix="featvis-chromium-")
    try:
        with sync_playwright() as p:
            b = Browser(p, data_dir)
            yield b
            b.context.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def assert_offline_and_clean(opened: OpenPage, folder: Path) -> None:
    """No console error or page error, every request a file inside ``folder``, every picture loaded."""
    assert not opened.errors, opened.errors
    assert not [c for c in opened.console if c[0] in ("error", "warning")], opened.console
    root = folder.resolve().as_uri() + "/"
    assert opened.requests and all(u.startswith(root) for u in opened.requests), opened.requests
    broken = opened.eval("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert broken == [], broken
