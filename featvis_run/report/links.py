"""Relative links in the HTML pages featvis-run writes from Python (the channel atlas)."""

from __future__ import annotations

import html
import urllib.parse

__all__ = ["href"]

# RFC 3986 sub-delimiters and "@" mean themselves in a path segment; ":" is encoded (in a first segment it would
# read as a URL scheme), and so are "#", "?", "%", "/" inside a name, spaces and non-ASCII letters (as UTF-8)
_SAFE = "!$&'()*+,;=@"


def href(relative_path: str) -> str:
    """A ``/``-separated path relative to the page, as an HTML attribute value: each segment URL-encoded, then
    HTML-escaped, so that a folder named ``a#1``, ``b?``, ``100%`` or ``ü x`` links to itself."""
    return html.escape("/".join(urllib.parse.quote(part, safe=_SAFE) for part in relative_path.split("/")))
