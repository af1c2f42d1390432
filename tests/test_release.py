"""Release hygiene: one version everywhere, a licence that matches the metadata. (That the built
wheel and sdist carry LICENSE is checked where they are built: ``./dev package``, run by CI.)"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest_trtctx

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_is_one_everywhere() -> None:
    """``pytest-trtctx --version``, the installed metadata and ``__version__`` agree, and the
    version is written once: pyproject.toml reads it from the package."""
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys; from pytest_trtctx.records.cli import main; sys.exit(main())", "--version"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = done.stdout.strip()
    installed = importlib.metadata.version("pytest-trtctx")
    assert said == f"pytest-trtctx {installed}" == f"pytest-trtctx {pytest_trtctx.__version__}"
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "pytest_trtctx.__version__"}
    literal = re.compile(r"\b\d+\.\d+\.\d+\b")
    written = [
        path.name
        for path in (ROOT / "pytest_trtctx").glob("*.py")
        if any(
            literal.search(line) and "version" in line.lower()
            for line in path.read_text().splitlines()
        )
    ]
    assert written == ["__init__.py"], written


def test_the_licence_is_the_one_the_metadata_names() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "Copyright 2026 the pytest-trtctx authors" in text
    assert importlib.metadata.metadata("pytest-trtctx")["License-Expression"] == "Apache-2.0"


def test_the_changelog_has_this_version_and_the_urls_name_it() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert f"## [{pytest_trtctx.__version__}]" in changelog
    urls = PYPROJECT["project"]["urls"]
    assert set(urls) == {"Homepage", "Issues", "Changelog"}
    assert all(
        u.startswith("https://github.com/pytest-trtctx/pytest-trtctx") for u in urls.values()
    )
