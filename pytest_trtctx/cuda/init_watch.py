"""Who initialised CUDA in the pytest process, when it did, and which statement did it.

Tests under an order run in processes forked from the pytest process, which must never have
initialised CUDA. Test modules are imported in the workers, after the order's recipe
(:mod:`.collection`); conftest.py files and plugins are imported by the pytest process itself. When
the process is found initialised, the tests skip and the reason names the culprit: the plugin
checks (cheaply: ``/proc/self/maps`` and the open files) before collection, after loading the
collected tests' conftest.py files and after each module collected here, and remembers the first
place where the process was no longer clean. The statement is then found by running the module
files the process had loaded, top-level statement by statement, in a fresh Python that asks after
each one whether CUDA is initialised (:func:`find_statement`). A fresh Python, never a fork: a
child forked from this process inherits its initialised driver and would blame the first line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Generator
from types import ModuleType

import pytest

from ..messages import (
    MSG_CULPRIT_CALL,
    MSG_CULPRIT_CALL_UNKNOWN,
    MSG_CULPRIT_MODULE,
    MSG_CULPRIT_STARTUP,
    MSG_CULPRIT_UNKNOWN,
)
from .probe import cuda_untouched

#: Seconds the statement search may take (its Python imports what the modules import: torch).
FIND_TIMEOUT = 120.0

#: Run by a fresh Python: each (path, module name) of argv[1], statement by statement, until CUDA
#: is initialised; prints the statement as JSON (null when none did it).
_FIND_SOURCE = r"""
import ast, json, sys
from pytest_trtctx.cuda.probe import cuda_untouched

for path, name in json.loads(sys.argv[1]):
    try:
        with open(path) as fh:
            source = fh.read()
        tree = ast.parse(source, path)
    except (OSError, SyntaxError, ValueError):
        continue
    namespace = {"__name__": name, "__file__": path, "__package__": name.rpartition(".")[0]}
    lines = source.splitlines()
    for node in tree.body:
        try:
            exec(compile(ast.Module([node], []), path, "exec"), namespace)
        except BaseException:
            break  # the rest of this module cannot run on its own
        if not cuda_untouched()[0]:
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            print(json.dumps({"path": path, "line": first, "code": lines[first - 1].strip()}))
            sys.exit(0)
print(json.dumps(None))
"""

#: Modules whose import is known not to initialise CUDA: pytest's, pluggy's and this plugin's.
_KNOWN_CLEAN = ("_pytest.", "pytest", "pluggy", "pytest_trtctx")


def loaded_modules(config: pytest.Config) -> list[tuple[str, str]]:
    """The module plugins (conftest.py files, ``-p`` and installed plugins) loaded so far, in
    the order they were registered, as (file, module name)."""
    found = []
    for _name, plugin in config.pluginmanager.list_name_plugin():
        if not isinstance(plugin, ModuleType):
            continue
        path = getattr(plugin, "__file__", None)
        if path and not plugin.__name__.startswith(_KNOWN_CLEAN):
            found.append((str(path), plugin.__name__))
    return list(dict.fromkeys(found))


def find_statement(modules: list[tuple[str, str]], cwd: str | None = None) -> str:
    """Which top-level statement of ``modules`` initialises CUDA, in words (MSG_CULPRIT_CALL),
    found in a fresh Python; or why it could not be told."""
    if not modules:
        return MSG_CULPRIT_CALL_UNKNOWN.format(why="no conftest.py or plugin module was loaded")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _FIND_SOURCE, json.dumps(modules)],
            capture_output=True,
            text=True,
            timeout=FIND_TIMEOUT,
            env=env,
            cwd=cwd,
            check=False,
        )
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return MSG_CULPRIT_CALL_UNKNOWN.format(why=f"the search took over {FIND_TIMEOUT:g} s")
    except (OSError, ValueError, IndexError):
        return MSG_CULPRIT_CALL_UNKNOWN.format(why="the search in a fresh Python failed")
    if found is None:
        names = ", ".join(os.path.relpath(path, cwd) for path, _name in modules)
        return MSG_CULPRIT_CALL_UNKNOWN.format(why=f"none of {names} does it on its own")
    return MSG_CULPRIT_CALL.format(
        path=os.path.relpath(found["path"], cwd), line=found["line"], code=found["code"]
    )


class CudaWatch:
    """Registered as ``trtctx-cuda-watch`` where tests are forked from this process."""

    def __init__(self, config: pytest.Config | None = None) -> None:
        self.culprit: str | None = None
        self.config = config
        #: The module plugins loaded when the process was first found initialised.
        self.suspects: list[tuple[str, str]] = []
        self.described: str | None = None

    def check(self, where: str) -> None:
        if self.culprit is None and not cuda_untouched()[0]:
            self.culprit = where
            if self.config is not None:
                self.suspects = loaded_modules(self.config)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> None:
        self.check(MSG_CULPRIT_STARTUP)

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        if isinstance(collector, pytest.Module):
            self.check(MSG_CULPRIT_MODULE.format(module=collector.nodeid))
        return report

    def describe(self) -> str:
        """The culprit in words, for MSG_CUDA_TOUCHED: where, and the statement (found once)."""
        if self.culprit is None:
            return MSG_CULPRIT_UNKNOWN
        if self.described is None:
            where = self.culprit
            if self.config is not None and where != MSG_CULPRIT_UNKNOWN:
                cwd = str(self.config.invocation_params.dir)
                where = f"{where}; {find_statement(self.suspects, cwd)}"
            self.described = where
        return self.described
