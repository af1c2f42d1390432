"""Collection where tests are forked: a child process collects, the pytest process replays it.

A test module may initialise CUDA when it is imported (``torch.compile`` decorating a function,
``import triton``, ``import pycuda.autoinit``, a module-level ``torch.cuda.is_available()``). An
order means "this happened first in the process", so such a module must be imported after the
order's recipe, in the worker that runs its tests, and never in the pytest process, which must stay
CUDA-clean to fork workers at all. So where tests are forked, the pytest process does not collect:
it forks a child that runs pytest's own collection (``generate_tests``, ``-k``/``-m``, ``--lf``,
this plugin's plans) and sends back, pickled, what the pytest process reads: every item as
:class:`~pytest_trtctx.isolation.proxy.ItemData`, every collect report (serialized as xdist sends
them), the
deselected items and the warnings. The pytest process replays those hooks in pytest's order and
sets ``session.items`` to :class:`~pytest_trtctx.isolation.proxy.ProxyItem` objects; each worker
collects
its own tests by node id after its recipe (:func:`~pytest_trtctx.isolation.proxy.find_items`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest.warnings import catch_warnings_for_item

from ..cuda.init_watch import CudaWatch
from ..cuda.probe import cuda_untouched
from ..errors import CollectionError
from ..messages import MSG_COLLECTION_DIED, MSG_CULPRIT_CONFTESTS, MSG_CULPRIT_STARTUP
from ..settings import plan
from ..settings.config import settings_of, xdist_controller
from ..wait_status import describe_status
from . import proctree
from .proxy import ItemData, ProxyItem, silenced
from .warning_wire import recorded_warning, replay_warning
from .worker import _die_with, preload


def forks_tests(config: pytest.Config) -> bool:
    """Whether this process forks its tests (so that it must not import test modules)."""
    s = settings_of(config)
    if s.isolate.value == "none" or config.option.collectonly or xdist_controller(config):
        return False
    if hasattr(config, "workerinput"):  # an xdist worker forks each test only under an order
        return s.active
    return True


@dataclass
class Collected:
    """What the collecting child sends back (pickled)."""

    #: Every item the collection made (deselected ones too), by index.
    items: list[ItemData] = field(default_factory=list)
    #: Every collect report, serialized, with the indices of the items in its result.
    reports: list[tuple[dict[str, Any], list[int]]] = field(default_factory=list)
    #: Each ``pytest_deselected`` call's items.
    deselected: list[list[int]] = field(default_factory=list)
    #: ``session.items`` after ``pytest_collection_modifyitems``.
    selected: list[int] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    #: pytest's ``--lf`` plugin's status line and skipped files, set by its collection hook.
    last_failed: tuple[str | None, int] | None = None
    usage_error: list[str] | None = None
    exit: tuple[str, int | None] | None = None
    #: An exception that escaped pytest's collection in the child (a traceback).
    error: str | None = None


class _Recorder:
    """Registered in the collecting child: keeps what the pytest process must replay."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.out = Collected()
        self.items: list[pytest.Item] = []  # kept alive: indexed by id()
        self.index: dict[int, int] = {}
        self.recording = False

    def ids(self, items: list[Any]) -> list[int]:
        found = []
        for item in items:
            if id(item) not in self.index:
                self.index[id(item)] = len(self.items)
                self.items.append(item)
            found.append(self.index[id(item)])
        return found

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        items = [x for x in report.result if isinstance(x, pytest.Item)]
        self.out.reports.append((data, self.ids(items)))

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.out.deselected.append(self.ids(list(items)))

    def pytest_warning_recorded(
        self,
        warning_message: warnings.WarningMessage,
        when: str,
        nodeid: str,
        location: tuple[str, int, str] | None,
    ) -> None:
        if self.recording:  # not the parent's warnings, replayed when this was registered
            self.out.warnings.append(recorded_warning(warning_message, when, nodeid, location))


def _picklable(value: object) -> object:
    try:
        pickle.dumps(value)
    except Exception:  # a property pickle cannot carry travels as its text, as JUnit XML has it
        return str(value)
    return value


def _item_data(item: pytest.Item) -> ItemData:
    path, lineno, domain = item.location
    return ItemData(
        nodeid=item.nodeid,
        location=(str(path), lineno, str(domain)),
        path=str(item.path),
        keywords=[str(k) for k in item.keywords],
        user_properties=[(str(k), _picklable(v)) for k, v in item.user_properties],
        plan=item.stash.get(plan.PLAN, None),
    )


def collect_here(session: pytest.Session) -> Collected:
    """In the collecting child: pytest's collection, recorded."""
    config = session.config
    recorder = _Recorder(config)
    config.pluginmanager.register(recorder, "trtctx-collection-recorder")
    recorder.recording = True
    out = recorder.out
    try:
        # The pytest process's warnings capture would report only when its hook returns,
        # which never happens in this child: this one reports when collection ends.
        with silenced(config), catch_warnings_for_item(config, config.hook, "collect", None):
            session.perform_collect()
    except pytest.UsageError as exc:
        out.usage_error = [str(arg) for arg in exc.args]
    except pytest.exit.Exception as exc:
        out.exit = (exc.msg, exc.returncode)
    out.selected = recorder.ids(list(session.items))
    out.items = [_item_data(item) for item in recorder.items]
    lf = config.pluginmanager.get_plugin("lfplugin")
    if lf is not None:
        out.last_failed = (getattr(lf, "_report_status", None), getattr(lf, "_skipped_files", 0))
    return out


def collect_in_child(
    session: pytest.Session, meanwhile: Callable[[], object] | None = None
) -> Collected:
    """Fork a child of this (CUDA-clean) process that collects; what it found. ``meanwhile``
    runs here, on a thread, while the child collects (started after the fork, so the child is
    forked from a process of one thread; joined before this returns)."""
    parent = os.getpid()
    rfd, wfd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = proctree.fork()
    if pid == 0:  # pragma: no cover - the child; its result is what the parent checks
        os.close(rfd)
        try:
            _die_with(parent)
            payload = pickle.dumps(collect_here(session))
        except BaseException:
            payload = pickle.dumps(Collected(error=traceback.format_exc()))
        with contextlib.suppress(OSError), os.fdopen(wfd, "wb") as out:
            out.write(payload)
        os._exit(0)
    os.close(wfd)
    chunks = []
    helper = None
    if meanwhile is not None:
        helper = threading.Thread(target=meanwhile, name="trtctx-preload", daemon=True)
        helper.start()
    try:
        with os.fdopen(rfd, "rb") as pipe:
            chunks.append(pipe.read())
        _pid, status = os.waitpid(pid, 0)
        if helper is not None:
            helper.join()
    except BaseException:  # ^C or SIGTERM while the child collects: it must not outlive us
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise
    data = b"".join(chunks)
    if status != 0 or not data:
        raise CollectionError(MSG_COLLECTION_DIED.format(how=describe_status(status)))
    got = pickle.loads(data)
    if not isinstance(got, Collected):
        raise CollectionError(MSG_COLLECTION_DIED.format(how=f"it sent {type(got).__name__}"))
    if got.error is not None:
        raise CollectionError(
            MSG_COLLECTION_DIED.format(how="an exception escaped pytest's collection there")
            + "\n"
            + got.error
        )
    return got


def _load_conftests(config: pytest.Config, dirs: list[Path]) -> None:
    """The conftest.py files along the collected tests' paths, as collection loads them: their
    reporting hooks run in the pytest process. A conftest that fails to import was reported by
    the child's collection already, as pytest reports it."""
    pm = config.pluginmanager
    for directory in dirs:
        with contextlib.suppress(Exception):
            pm._loadconftestmodules(
                directory,
                importmode=config.getoption("importmode"),
                rootpath=config.rootpath,
                consider_namespace_packages=config.getini("consider_namespace_packages"),
            )


def replay(session: pytest.Session, got: Collected) -> None:
    """Make this session what the child's collection made of it, through pytest's hooks."""
    config = session.config
    proxies = []
    for data in got.items:
        proxy = ProxyItem.of(session, data)
        if data.plan is not None:
            proxy.stash[plan.PLAN] = data.plan
        proxies.append(proxy)
    reports = [
        (config.hook.pytest_report_from_serializable(config=config, data=data), ids)
        for data, ids in got.reports
    ]
    paths = [Path(d.path).parent for d in got.items]
    paths += [config.rootpath / str(r.fspath) for r, _ids in reports if r.fspath]
    _load_conftests(config, [p if p.is_dir() else p.parent for p in dict.fromkeys(paths)])
    for report, ids in reports:
        report.result = [proxies[i] for i in ids]
        hook = session.gethookproxy(config.rootpath / str(report.fspath or "."))
        hook.pytest_collectreport(report=report)
    for warning in got.warnings:
        replay_warning(config, warning)
    try:
        if got.exit is not None:
            raise pytest.exit.Exception(got.exit[0], got.exit[1])
        if got.usage_error is not None:
            raise pytest.UsageError(*got.usage_error)
        for ids in got.deselected:
            config.hook.pytest_deselected(items=[proxies[i] for i in ids])
        lf = config.pluginmanager.get_plugin("lfplugin")
        if lf is not None and got.last_failed is not None:
            lf._report_status, lf._skipped_files = got.last_failed
        session.items = [proxies[i] for i in got.selected]
    finally:
        with conftests_kept_for_workers(session):
            config.hook.pytest_collection_finish(session=session)
    session.testscollected = len(session.items)


@contextlib.contextmanager
def conftests_kept_for_workers(session: pytest.Session) -> Iterator[None]:
    """Keep the conftest modules whose fixtures are still to be read through
    ``pytest_collection_finish``.

    pytest (9.1) reads a conftest's fixtures when the conftest's folder is collected, and drops
    the conftests still waiting at ``pytest_collection_finish``. The pytest process collected no
    folder here (a child did), so every conftest is still waiting; a worker forked after the drop
    would collect its tests without their conftests' fixtures (an autouse one silently never
    runs). Workers collect after this: they must find them waiting as a fresh collection does.
    """
    manager = getattr(session, "_fixturemanager", None)
    pending = getattr(manager, "_pending_conftests", None)
    kept = dict(pending) if isinstance(pending, dict) else {}
    try:
        yield
    finally:
        if kept and isinstance(pending, dict):
            pending.update(kept)


class ChildCollection:
    """Registered as ``trtctx-collection`` where this process forks its tests."""

    def __init__(self, watch: CudaWatch | None) -> None:
        self.watch = watch

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> bool | None:
        if self.watch is not None:
            self.watch.check(MSG_CULPRIT_STARTUP)
        if not cuda_untouched()[0]:
            # Initialised before collection (a plugin, a conftest.py): nothing can be forked
            # from here, so pytest collects as usual and every test skips naming the culprit.
            return None
        try:
            # The tests will be forked from this process with torch and cuda-python imported
            # (worker.preload: imports initialise nothing): imported while the child collects.
            got = collect_in_child(session, meanwhile=preload)
        except CollectionError as exc:
            # The run cannot go on without its tests; the message says what happened there.
            pytest.exit(str(exc), returncode=pytest.ExitCode.INTERNAL_ERROR)
        replay(session, got)
        if self.watch is not None:
            self.watch.check(MSG_CULPRIT_CONFTESTS)
        return True
