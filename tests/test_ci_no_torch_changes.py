"""CI's check that installing the plugin changes no package already installed
(.ci/no_torch_changes.py), fed pip's own installation reports of dry runs made here, offline,
against this environment with wheels written for the test."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "no_torch_changes.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("no_torch_changes", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A pure wheel with metadata and nothing else: all a resolver reads."""
    stem = f"{name.replace('-', '_')}-{version}"
    meta = [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    files = {
        f"{stem}.dist-info/METADATA": "\n".join(meta) + "\n",
        f"{stem}.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = f"{stem}.dist-info/RECORD"
    files[record] = "".join(f"{f},,\n" for f in (*files, record))
    with zipfile.ZipFile(folder / f"{stem}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


def _dry_run(tmp: Path, requirement: str) -> Path:
    """pip's report of installing ``requirement`` from the test's wheels into this environment
    (nothing installed: --dry-run; no index, no configuration: offline)."""
    report = tmp / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index",
         "--find-links", str(tmp), "--report", str(report), requirement],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return report


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_an_install_that_would_upgrade_an_installed_package_fails_naming_it(
    tmp_path: Path,
) -> None:
    """As cupti-python 13.4 upgraded torch's nvidia-cuda-cupti: here a package that needs a
    newer iniconfig (pytest's, installed) than the one installed."""
    have = metadata.version("iniconfig")
    _wheel(tmp_path, "iniconfig", "99.0")
    _wheel(tmp_path, "trtctx-probe", "1.0", ("iniconfig>=99",))
    report = _dry_run(tmp_path, "trtctx-probe")
    done = _run(str(report))
    assert done.returncode == 1, done.stdout
    assert f"would change what is installed: iniconfig {have} -> 99.0 (upgrade)" in done.stdout


def test_an_install_that_only_adds_packages_passes(tmp_path: Path) -> None:
    _wheel(tmp_path, "iniconfig", "99.0")  # offered, not needed: pip keeps the installed one
    _wheel(tmp_path, "trtctx-probe-dep", "2.0")
    _wheel(tmp_path, "trtctx-probe", "1.0", ("iniconfig", "trtctx-probe-dep"))
    done = _run(str(_dry_run(tmp_path, "trtctx-probe")))
    assert done.returncode == 0, done.stdout
    assert "nothing installed changes (2 packages added)" in done.stdout


@pytest.mark.parametrize(
    ("old", "new", "how"),
    [("2.0", "1.0", "downgrade"), ("1.0", "1.0", "reinstall"), ("1.0", "2.0", "upgrade")],
)
def test_each_kind_of_change_is_named(old: str, new: str, how: str) -> None:
    report = {"install": [{"metadata": {"name": "Nvidia_Cuda.Cupti", "version": new}}]}
    said = _script().changes(report, {"nvidia-cuda-cupti": old})
    assert said == [f"Nvidia_Cuda.Cupti {old} -> {new} ({how})"]
    assert _script().changes(report, {"nvidia-cuda-cupti": old}, ["nvidia-cuda-cupti"]) == []


def test_a_report_of_nothing_is_no_change(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"version": "1", "install": []}))
    assert _run(str(tmp_path / "r.json")).returncode == 0
