"""``./dev`` installs nothing that is already there, and says what it installs when it does.

``./dev`` runs in a copy of the checkout with stand-ins for the Pythons it may use on ``PATH``:
each one records how it was called and fakes ``pip``, ``pytest`` and ``venv``; everything else
(``.ci/dev_ready.py`` above all) runs for real, in an interpreter chosen per case: this test's
Python (torch, cuda-bindings, xdist, pytest), or a bare virtualenv without them. "Installed from
this checkout" is a distribution's metadata on the stand-in's ``sys.path`` that says so.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READY = ROOT / ".ci" / "dev_ready.py"
_spec = importlib.util.spec_from_file_location("dev_ready", READY)
assert _spec is not None and _spec.loader is not None
dev_ready = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dev_ready)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None or importlib.util.find_spec("xdist") is None,
    reason="needs torch and pytest-xdist in this Python: it stands for a prepared GPU host's",
)

#: A Python as ./dev sees it: logs its arguments, fakes what would install or run tests.
STAND_IN = """#!/usr/bin/env bash
echo "$0 $*" >> "{log}"
case "$1 $2" in
    "-m pip"|"-m pytest") exit 0 ;;
    "-m venv") mkdir -p "$3/bin" && cp "{venv_python}" "$3/bin/python" && exit 0 ;;
esac
PYTHONPATH="{path}" exec "{real}" "$@"
"""


def checkout(tmp_path: Path) -> Path:
    """The files ./dev reads, copied (a checkout of its own, so that what is installed from it
    is decided per test)."""
    root = tmp_path / "checkout"
    for name in ("dev", ".ci/dev_ready.py", "pyproject.toml", "pytest_trtctx/__init__.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, root / name)
    return root


def installed_from(site: Path, root: Path, version: str | None = None) -> Path:
    """Metadata of pytest-trtctx installed in editable mode from ``root``, as pip writes it."""
    info = site / "pytest_trtctx-0.1.0.dist-info"
    info.mkdir(parents=True)
    version = version or str(dev_ready.checkout_version())
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: pytest-trtctx\nVersion: {version}\n"
    )
    (info / "direct_url.json").write_text(
        f'{{"dir_info": {{"editable": true}}, "url": "{root.resolve().as_uri()}"}}'
    )
    (info / "RECORD").write_text(f"{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    return site


def stand_in(path: Path, log: Path, real: str, sys_path: list[Path], venv_python: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        STAND_IN.format(
            log=log, real=real, path=os.pathsep.join(map(str, sys_path)), venv_python=venv_python
        )
    )
    path.chmod(0o755)


def run_dev(
    root: Path, bin_dir: Path, *args: str, **environ: str
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **environ)
    env.pop("PYTHON", None)
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(root / "dev"), *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python without torch (a machine where ./dev has to make .venv)."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")


def test_a_prepared_python_with_this_checkout_installed_runs_pytest_and_nothing_else(
    tmp_path: Path,
) -> None:
    root, log, bin_dir = checkout(tmp_path), tmp_path / "log", tmp_path / "bin"
    site = installed_from(tmp_path / "site", root)
    stand_in(bin_dir / "python3", log, sys.executable, [site, root], bin_dir / "python3")
    # A host's OpenMP settings (nproc reads them) say nothing of how many processes the job runs.
    done = run_dev(root, bin_dir, "matrix", "-k", "f16", OMP_NUM_THREADS="1", OMP_THREAD_LIMIT="1")
    assert done.returncode == 0, done.stderr
    made = calls(log)
    assert [c for c in made if " -m pip " in c] == []
    assert made[-1].endswith(
        "-m pytest tests/regression --trtctx-order=all --trtctx-isolate=order --trtctx-prebuild "
        "--trtctx-backend=auto,vendors --trtctx-cudnn-plans=1 --trtctx-fast-contexts "
        f"--trtctx-workers={min(len(os.sched_getaffinity(0)), 8)} -p no:cacheprovider -k f16"
    )
    assert len(made) == 2, made  # the one question, then pytest
    assert "dev: installing" not in done.stderr


@pytest.mark.parametrize("off", ["elsewhere", "version", "pyproject"])
def test_a_prepared_python_gets_this_checkout_installed_once_with_one_line_saying_why(
    tmp_path: Path, off: str
) -> None:
    root, log, bin_dir = checkout(tmp_path), tmp_path / "log", tmp_path / "bin"
    site = tmp_path / "site"
    if off == "elsewhere":
        installed_from(site, tmp_path / "another-checkout")
    elif off == "version":
        installed_from(site, root, version="0.0.1")
    else:
        installed_from(site, root)
        later = (site / "pytest_trtctx-0.1.0.dist-info" / "METADATA").stat().st_mtime + 5
        os.utime(root / "pyproject.toml", (later, later))
    stand_in(bin_dir / "python3", log, sys.executable, [site, root], bin_dir / "python3")
    done = run_dev(root, bin_dir, "matrix")
    assert done.returncode == 0, done.stderr
    pips = [c.split(" -m ", 1)[1] for c in calls(log) if " -m pip " in c]
    assert pips == ["pip install -q --no-deps --no-build-isolation -e ."]
    said = [line for line in done.stderr.splitlines() if line.startswith("dev: ")]
    why = {
        "elsewhere": "is installed, not in editable mode from",
        "version": "installed at version 0.0.1, the checkout is",
        "pyproject": "pyproject.toml changed since it was installed",
    }[off]
    assert len(said) == 1 and why in said[0], done.stderr


def test_the_first_venv_says_what_it_installs_and_shows_pips_progress(
    tmp_path: Path, bare_python: str
) -> None:
    """No torch where ./dev starts: it makes .venv and installs into it from PyPI, with pip's
    own progress (no -q), after one line naming what is missing."""
    root, log, bin_dir = checkout(tmp_path), tmp_path / "log", tmp_path / "bin"
    venv_python = tmp_path / "venv-python"  # what `python3 -m venv` makes: a bare Python
    stand_in(venv_python, log, bare_python, [], venv_python)
    stand_in(bin_dir / "python3", log, bare_python, [], venv_python)
    done = run_dev(root, bin_dir, "matrix")
    assert done.returncode == 0, done.stderr
    made = calls(log)
    assert any(c.endswith("-m venv .venv") for c in made)
    pips = [c.split(" -m ", 1)[1] for c in made if " -m pip " in c]
    assert pips == [
        "pip install --upgrade pip",
        "pip install torch==2.13.0",
        "pip install -e .[dev]",
    ]
    said = [line for line in done.stderr.splitlines() if line.startswith("dev: ")]
    assert said == [
        "dev: installing into .venv from PyPI: torch==2.13.0, then this checkout with [dev] "
        "(torch cuda.bindings.nvrtc xdist tensorrt_rtx build check_jsonschema playwright cudnn "
        "triton ruff mypy missing)"
    ]
    assert ".venv/bin/python -m pytest tests/regression" in made[-1]


def _venv_modules() -> list[str]:
    """The modules ``./dev`` asks a .venv for (its second dev_ready.py question)."""
    import re

    text = (ROOT / "dev").read_text()
    asked = re.findall(r'"\$PY" \.ci/dev_ready\.py ([^)]*?) 2>/dev/null', text, re.S)
    return asked[-1].replace("\\\n", " ").split()


def test_a_ready_venv_is_used_as_it_is(tmp_path: Path, bare_python: str) -> None:
    lacking = dev_ready.missing(_venv_modules())
    if lacking:
        pytest.skip(f"this Python lacks {' '.join(lacking)}: it cannot stand in for a ready .venv")
    root, log, bin_dir = checkout(tmp_path), tmp_path / "log", tmp_path / "bin"
    site = installed_from(tmp_path / "site", root)
    stand_in(root / ".venv" / "bin" / "python", log, sys.executable, [site, root], bin_dir)
    stand_in(bin_dir / "python3", log, bare_python, [], bin_dir)
    done = run_dev(root, bin_dir, "test", "-x", OMP_NUM_THREADS="1")
    assert done.returncode == 0, done.stderr
    made = calls(log)
    assert [c for c in made if " -m pip " in c or " -m venv " in c] == []
    assert " -m pytest tests " in made[-1] and made[-1].endswith("-x")
    cpus = len(os.sched_getaffinity(0))
    assert (f" -n {cpus} " in made[-1]) is (cpus > 1), made[-1]  # whatever OpenMP is told
    assert "dev: " not in done.stderr


def test_missing_modules_are_named_without_importing_them(tmp_path: Path) -> None:
    """The question imports nothing: a module that exists is found without running it."""
    (tmp_path / "loud.py").write_text("raise SystemExit('imported')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(READY), "loud", "no_such_module_here", "no_such.sub"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == dev_ready.MISSING
    assert done.stdout == "missing: no_such_module_here no_such.sub\n"


@pytest.mark.parametrize("asked", ["help", "--help", ""])
def test_an_unknown_or_no_command_lists_every_command(tmp_path: Path, asked: str) -> None:
    root = checkout(tmp_path)
    done = subprocess.run(
        [str(root / "dev"), *([asked] if asked else [])],
        cwd=root, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    for command in ("./dev matrix", "./dev test", "./dev lint", "./dev bench", "./dev package"):
        assert command in done.stdout, done.stdout
    assert not done.stdout.startswith("#!")
