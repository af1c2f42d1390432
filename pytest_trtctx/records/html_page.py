"""The HTML page itself: one self-contained file from a report (or two, for a diff).

The page is the template ``html/page.html`` with its style (``html/page.css``), its script
(``html/page.js``) and the grids' data (:mod:`.html_grid`, compressed) written inline: no
request leaves the page when it is opened (its Content-Security-Policy allows none), so it opens
from a CI artifact or a mail attachment as it is. The script draws the grids from the data; the
file carries each test once.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from ..messages import MSG_HTML_NO_DIAGNOSIS
from ..storage import save_output
from .html_grid import DiffLike, diff_data, run_data

#: The page's parts, shipped as package data beside this module.
TEMPLATE, STYLE, SCRIPT = "page.html", "page.css", "page.js"
#: Where each part goes in the template; filled in one pass, so that no part's text (a test id
#: that reads ``{{JS}}``) is ever taken for a placeholder.
PLACEHOLDER = re.compile(r"\{\{(TITLE|CSS|JS|DATA)\}\}")


def asset(name: str) -> str:
    """One of the page's parts, read from the installed package."""
    return (resources.files(__package__ or "pytest_trtctx") / "html" / name).read_text("utf-8")


def data_json(data: dict[str, Any]) -> str:
    """The data as the page's inline JSON: nothing in it can end the script element that holds
    it (every ``<`` is escaped) and a lone surrogate (a test id that is not UTF-8) is written as
    its JSON escape, never an encoding error."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    text = text.replace("<", "\\u003c")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def packed(data: dict[str, Any]) -> str:
    """The data as the page carries it: its JSON gzip-compressed, in base64 (a large run's
    records repeat node ids and messages: compressed, the file is several times smaller; the
    browser unpacks it with its own DecompressionStream, no library)."""
    blob = gzip.compress(data_json(data).encode("utf-8"), compresslevel=9, mtime=0)
    return base64.b64encode(blob).decode("ascii")


def render(data: dict[str, Any]) -> bytes:
    """The page's bytes for ``data`` (:func:`.html_grid.run_data` or ``diff_data``)."""
    data = {**data, "noDiagnosis": MSG_HTML_NO_DIAGNOSIS}
    parts = {
        "TITLE": html.escape(str(data["title"])),
        "CSS": asset(STYLE),
        "JS": asset(SCRIPT),
        "DATA": packed(data),
    }
    page = PLACEHOLDER.sub(lambda m: parts[m.group(1)], asset(TEMPLATE))
    return page.encode("utf-8", "backslashreplace")


def run_page(report: dict[str, Any], where: str) -> bytes:
    """The page of one run, from its report (``where`` names it on the page)."""
    return render(run_data(report, where))


def diff_page(
    old: dict[str, Any],
    new: dict[str, Any],
    diff: DiffLike,
    names: tuple[str, str],
    named: Callable[[str], str] = str,
) -> bytes:
    """The upgrade page: the new run's grid with what changed from ``old`` marked per cell."""
    return render(diff_data(old, new, diff, names, named))


def save_page(path: Path, page: bytes) -> tuple[Path | None, str | None]:
    """Write the page where asked, else to a new file in the temp folder (as a report is):
    where it went (None: nowhere) and, if not to ``path``, why. Never raises OSError."""
    return save_output(path, page, ".html")
