"""Reading the report page's inlined data in tests (what the page's script reads)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DATA = re.compile(r'<script type="application/json" id="featvis-data">(.*?)</script>', re.S)


def page_data(path: Path) -> dict[str, Any]:
    """The JSON inlined in a page written by featvis_run.report.page."""
    (found,) = DATA.findall(path.read_text(encoding="utf-8"))
    return json.loads(found)


def pictures(path: Path) -> set[str]:
    """The composite pictures a page links to (relative to the page's folder)."""
    return {m["picture"] for m in page_data(path)["maps"] if m.get("picture")}
