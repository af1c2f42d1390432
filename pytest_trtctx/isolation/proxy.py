"""An item collected in another process: what the pytest process knows of a test it never imported,
and how the worker that runs the test finds the real item again.

Where tests are forked, the pytest process does not import test modules: a module may initialise
CUDA at import, which must happen after the order's recipe, in the worker. A child process
collects the tests (:mod:`.collection`) and sends back what the pytest process reads of each item
(node id, location, keywords, user properties, plan); :class:`ProxyItem` carries that. The worker,
after its order's recipe, collects its group's node ids itself (:func:`find_items`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..messages import MSG_NOT_COLLECTED_IN_WORKER


@dataclass
class ItemData:
    """An item as it crosses the pipe from the collecting child (pickled)."""

    nodeid: str
    location: tuple[str, int | None, str]
    path: str
    keywords: list[str]
    user_properties: list[tuple[str, object]]
    #: The item's plan (``plan.Plan``), made by the plugin's collection hook in the child.
    plan: Any = None


class ProxyItem(pytest.Item):
    """A test collected in another process. It never runs here: a worker collects the real item
    by node id and runs that."""

    data: ItemData

    @classmethod
    def of(cls, session: pytest.Session, data: ItemData) -> ProxyItem:
        name = data.nodeid.rpartition("::")[2] or data.nodeid
        item: ProxyItem = cls.from_parent(
            session, name=name, nodeid=data.nodeid, path=Path(data.path)
        )
        item.data = data
        for keyword in data.keywords:
            item.keywords[keyword] = True
        item.user_properties = list(data.user_properties)
        return item

    @property
    def location(self) -> tuple[str, int | None, str]:
        return self.data.location

    def reportinfo(self) -> tuple[Path, int | None, str]:
        _path, lineno, domain = self.data.location
        return Path(self.data.path), lineno, domain

    def runtest(self) -> None:
        raise RuntimeError(f"{self.nodeid} was collected in another process: a worker runs it")


def collect_arg(nodeid: str, path: str) -> str:
    """What a worker passes to pytest's collection to find ``nodeid`` again: the node id with its
    file part made absolute (node ids are relative to the rootdir, arguments to the invocation
    directory)."""
    file_part, sep, rest = nodeid.partition("::")
    if Path(path).name != Path(file_part).name:
        return nodeid  # an item of no file of its own: its node id is all there is
    return f"{path}{sep}{rest}"


def _unsent(*_args: object, **_kwargs: object) -> None:
    """What an xdist worker's link sends while a forked child collects: nothing."""


@contextlib.contextmanager
def silenced(config: pytest.Config) -> Iterator[None]:
    """Collect in this forked child without a word to the terminal (the pytest process says what
    was collected) or to xdist's controller (the child's events would reach it as the xdist
    worker's own). The xdist link stays registered, its hooks run (``--dist loadgroup`` names
    node ids there); only what it would send is dropped."""
    pm = config.pluginmanager
    terminal = pm.get_plugin("terminalreporter")
    if terminal is not None:
        pm.unregister(terminal)
    # xdist runs its remote.py in the worker through execnet (module "__channelexec__"), so its
    # link is known by its class name and its sender, not by a module name.
    links = [
        p
        for p in pm.get_plugins()
        if type(p).__name__ == "WorkerInteractor" and callable(getattr(p, "sendevent", None))
    ]
    for link in links:
        link.sendevent = _unsent
    try:
        yield
    finally:
        for link in links:
            del link.sendevent
        if terminal is not None:
            pm.register(terminal, "terminalreporter")


class _Failures:
    """Collects the failed collect reports of a worker's collection, for the reason a test was
    not found."""

    def __init__(self) -> None:
        self.reports: list[pytest.CollectReport] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.reports.append(report)


def find_items(session: pytest.Session, wanted: Sequence[pytest.Item]) -> list[pytest.Item | str]:
    """In a worker, after its order's recipe: the real item for each of ``wanted`` (proxies from
    the pytest process; real items pass through), collected here by node id; for one that this
    collection does not yield, why (the module collected differently in the worker)."""
    proxies = [i for i in wanted if isinstance(i, ProxyItem)]
    if not proxies:
        return list(wanted)
    config = session.config
    failures = _Failures()
    config.pluginmanager.register(failures, "trtctx-worker-collection")
    found: dict[str, pytest.Item] = {}
    problem = ""
    try:
        with silenced(config):
            args = list(dict.fromkeys(collect_arg(p.nodeid, p.data.path) for p in proxies))
            files = list(dict.fromkeys(a.partition("::")[0] for a in args))
            items: Sequence[pytest.Item] = []
            if len(args) == 1:
                # One test: pytest collects only what its node id names.
                with contextlib.suppress(pytest.UsageError):  # not found: collect its module
                    items = session.perform_collect(args)
            if not items:
                # Many tests (an order's, or a module's that collects differently here): each
                # module once, whole, is cheaper than pytest matching every node id; the tests
                # not wanted are not run.
                try:
                    items = session.perform_collect(files)
                except pytest.UsageError as exc:
                    problem = "\n".join(str(a) for a in exc.args)
        found = {i.nodeid: i for i in items}
        for i in items:  # the same test under another node id (see _same_test)
            found.setdefault(_same_test(str(i.path), i.nodeid), i)
    finally:
        config.pluginmanager.unregister(failures)
    errors = "\n".join(dict.fromkeys(str(r.longrepr) for r in failures.reports))
    out: list[pytest.Item | str] = []
    for item in wanted:
        real = found.get(item.nodeid) if isinstance(item, ProxyItem) else item
        if real is None and isinstance(item, ProxyItem):
            real = found.get(_same_test(item.data.path, item.nodeid))
        if real is not None:
            out.append(real)
            continue
        why = "\n\n".join(w for w in (problem, errors) if w)
        out.append(MSG_NOT_COLLECTED_IN_WORKER.format(nodeid=item.nodeid, why=why or "-"))
    return out


def _same_test(path: str, nodeid: str) -> str:
    """A key that names one test whatever the node id's file part says: a node id is relative to
    the node the collection started from (``--pyargs pkg.suite`` starts at the package, a worker's
    collection of the file by its path at the rootdir), the file itself and the rest are not."""
    return f"{os.path.realpath(path)}::{nodeid.partition('::')[2]}"


def not_found_report(item: pytest.Item, why: str) -> pytest.TestReport:
    """The failed report of a test its worker's collection did not yield."""
    return pytest.TestReport(
        nodeid=item.nodeid,
        location=item.location,
        keywords={k: 1 for k in item.keywords},
        outcome="failed",
        longrepr=why,
        when="setup",
        user_properties=list(item.user_properties),
    )
