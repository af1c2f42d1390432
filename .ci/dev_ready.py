"""Whether the Python that runs it is ready for ``./dev``: one Python start, nothing imported.

``python .ci/dev_ready.py MODULE...`` prints one line and exits with:

- 0 ``ready``: every MODULE is importable here and this checkout is installed into this Python in
  editable mode, at the checkout's version, since pyproject.toml last changed;
- 3 ``install: WHY``: every MODULE is importable, but this checkout is not installed as above
  (WHY says what is off: nothing else needs installing);
- 2 ``missing: MODULE...``: some MODULE cannot be imported here.

Modules are found (``importlib.util.find_spec``), never imported: importing torch alone takes
seconds, and ``./dev`` asks on every call. The script's own folder is on ``sys.path``, not the
checkout's root, so the package is found only where it is installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "pytest-trtctx"
PACKAGE = "pytest_trtctx"
#: Exit statuses; 1 is left to Python itself (an uncaught error).
READY, MISSING, INSTALL = 0, 2, 3


def missing(modules: list[str]) -> list[str]:
    """The modules that cannot be imported here (found, not imported: a parent package is)."""
    absent = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package that is missing or broken
            found = False
        if not found:
            absent.append(name)
    return absent


def checkout_version() -> str | None:
    """The version this checkout declares (``__version__`` in the package, read as text)."""
    text = (ROOT / PACKAGE / "__init__.py").read_text()
    found = re.search(r'^__version__ = "([^"]+)"', text, re.M)
    return found.group(1) if found else None


def why_not_installed() -> str | None:
    """What keeps this checkout from counting as installed here, or None."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return f"{DISTRIBUTION} is not installed"
    direct = dist.read_text("direct_url.json")
    try:
        info = json.loads(direct) if direct else {}
    except ValueError:
        info = {}
    url = info.get("url", "") if isinstance(info, dict) else ""
    editable = isinstance(info, dict) and (info.get("dir_info") or {}).get("editable") is True
    where = Path(unquote(urlparse(url).path)) if url.startswith("file:") else None
    if not editable or where is None or where.resolve() != ROOT:
        return f"{DISTRIBUTION} {dist.version} is installed, not in editable mode from {ROOT}"
    if dist.version != checkout_version():
        return f"installed at version {dist.version}, the checkout is {checkout_version()}"
    spec = importlib.util.find_spec(PACKAGE)
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    if origin is None or ROOT not in origin.parents:
        return f"`import {PACKAGE}` finds {origin}, not this checkout's"
    # The metadata is written when the checkout is installed: a pyproject.toml changed after it
    # (dependencies, entry points) needs installing again.
    metadata = [f for f in dist.files or () if f.name == "METADATA"]
    try:
        installed_at = os.stat(Path(str(dist.locate_file(metadata[0])))).st_mtime
    except (IndexError, OSError):
        return "its installed metadata cannot be read"
    if os.stat(ROOT / "pyproject.toml").st_mtime > installed_at:
        return "pyproject.toml changed since it was installed"
    return None


def main(modules: list[str]) -> int:
    absent = missing(modules)
    if absent:
        print("missing: " + " ".join(absent))
        return MISSING
    why = why_not_installed()
    if why is not None:
        print(f"install: {why}")
        return INSTALL
    print("ready")
    return READY


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
