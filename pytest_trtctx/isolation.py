"""Run tests in forked processes where CUDA was never initialised.

Why fork, and from where: a new Python that imports torch costs about 5 s; a fork of a parent that
imported torch but never initialised CUDA costs about 9 ms (``docs/isolation.md``). The pytest
process collects the tests (importing whatever the test modules import) and never touches CUDA;
before every fork :func:`~pytest_trtctx.probe.cuda_untouched` proves that, and a fork is refused
(the test fails with the reason) if the proof fails. Children are never forked from a process
that initialised CUDA.

A worker is a forked child that runs a list of items (one item for ``--trtctx-isolate=test``, all
items of one order for ``order``), applying the order's recipe first. It reports over a pipe in
JSON lines, as plain dicts, the way xdist's workers do: ``phase`` when a phase starts, ``report``
for each serialized TestReport, ``done`` when an item is finished. The parent logs reports as they
come; a worker that dies becomes a failed report naming the test and the phase, a worker that makes
no progress for the timeout is dumped (faulthandler) and killed, and the items it had not reached
go to a new worker. The run goes on.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import json
import os
import selectors
import signal
import sys
import tempfile
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pytest
from _pytest.reports import TestReport
from _pytest.runner import runtestprotocol

from .names import MARK_TIMEOUT, MSG_CRASHED, MSG_CUDA_TOUCHED, MSG_HUNG
from .probe import cuda_untouched

if TYPE_CHECKING:
    from .config import Settings

#: Seconds a worker may take to apply its order (the recipe creates a fresh CUDA context) before it
#: counts as hung, when the test's own timeout is shorter. The driver serialises context creation:
#: 16 processes creating one at once on an H100 waited up to 3.2 s, and a GPU machine running the
#: plugin's own tests with 32 xdist workers went past a 1-s test timeout in this phase. Contention
#: is not a hang, and a test's timeout is about the test.
ORDER_START_ALLOWANCE = 60.0


@dataclass
class Group:
    order: str | None
    items: list[pytest.Item]


@dataclass
class Worker:
    pid: int
    group: Group
    fd: int
    dump_path: str
    buffer: bytes = b""
    index: int = -1  # the item in progress
    phase: str = "start"
    started: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    deadline: float | None = None
    timeout: float = 0.0
    timeout_source: str = ""
    hung: bool = False


@dataclass
class Spare:
    """A worker forked ahead of time, waiting for its tests on ``ctrl``: the fork (tens of
    milliseconds for a parent with torch and the CUDA libraries mapped) then overlaps the test
    that runs meanwhile instead of standing between two tests."""

    pid: int
    ctrl: int  # the parent writes the group here, as one JSON line, then closes it
    fd: int  # the worker's report pipe
    dump_path: str


def item_order(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    order = callspec.params.get("trtctx_order")
    return order if isinstance(order, str) else None


def item_timeout(item: pytest.Item, settings: Settings) -> tuple[float, str]:
    """The hang timeout for ``item``: marker, then option, then ini, then the default."""
    marker = item.get_closest_marker(MARK_TIMEOUT)
    if marker is not None and marker.args:
        return float(marker.args[0]), f"marker {MARK_TIMEOUT} on {item.nodeid}"
    return settings.timeout.value, settings.timeout.source


def groups(items: list[pytest.Item], settings: Settings) -> list[Group]:
    """Split the items into worker groups, keeping each group in collection order."""
    single = settings.orders.value[0] if len(settings.orders.value) == 1 else None
    if settings.isolate.value == "test":
        return [Group(item_order(item) or single, [item]) for item in items]
    by_order: dict[str | None, list[pytest.Item]] = {}
    for item in items:
        by_order.setdefault(item_order(item) or single, []).append(item)
    return [Group(order, group) for order, group in by_order.items()]


# --------------------------------------------------------------------------------------------
# The child side.


class _Progress:
    """Registered in a worker: tells the parent when each phase of each item starts."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.index = -1

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.send({"event": "phase", "index": self.index, "phase": "setup"})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        self.send({"event": "phase", "index": self.index, "phase": "call"})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        self.send({"event": "phase", "index": self.index, "phase": "teardown"})


def _child(session: pytest.Session, settings: Settings, wfd: int, dump: str, ctrl: int) -> None:
    """Body of a forked worker. Never returns.

    Every worker is forked as a spare: it does everything that does not depend on its tests
    first (and takes those page faults) while it waits for its group on ``ctrl``.
    """
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and kills us
        dump_file = open(dump, "w")  # noqa: SIM115 - lives as long as the process
        faulthandler.enable(file=dump_file, all_threads=True)
        faulthandler.register(signal.SIGUSR1, file=dump_file, all_threads=True)
        out = os.fdopen(wfd, "w", buffering=1)

        def send(message: dict[str, Any]) -> None:
            out.write(json.dumps(message) + "\n")
            out.flush()

        from . import orders

        orders.reset_for_child()
        torch = sys.modules.get("torch")
        if torch is not None:  # CPU references in many workers at once: don't oversubscribe
            share = max(1, (os.cpu_count() or 1) // max(1, settings.workers.value))
            torch.set_num_threads(share)
        progress = _Progress(send)
        session.config.pluginmanager.register(progress, "trtctx-progress")
        hook = session.config.hook
        group = _read_group(session, ctrl)
        if group is None:
            os._exit(0)  # retired without work
        if group.order is not None:
            from .plugin import apply_order

            apply_order(session.config, group.order)
        for index, item in enumerate(group.items):
            progress.index = index
            nextitem = group.items[index + 1] if index + 1 < len(group.items) else None
            send({"event": "start", "index": index})
            for report in runtestprotocol(item, log=False, nextitem=nextitem):
                data = hook.pytest_report_to_serializable(config=session.config, report=report)
                send({"event": "report", "index": index, "data": data})
            send({"event": "done", "index": index})
    except BaseException:  # anything here is the plugin's own failure: say it, then exit
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _read_group(session: pytest.Session, ctrl: int) -> Group | None:
    """In a spare: the group the parent sends (item indices and order), or None at EOF."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(ctrl, 1 << 16)
        if not chunk:
            return None
        data += chunk
    os.close(ctrl)
    message = json.loads(data)
    return Group(message["order"], [session.items[i] for i in message["items"]])


# --------------------------------------------------------------------------------------------
# The parent side.


class Scheduler:
    """Fork workers for the groups, at most ``settings.workers`` at once, and log their reports."""

    def __init__(self, session: pytest.Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.config = session.config
        self.queue: deque[Group] = deque(groups(list(session.items), settings))
        self.running: dict[int, Worker] = {}
        self.selector = selectors.DefaultSelector()
        self.tmpdir = tempfile.mkdtemp(prefix="trtctx-")
        self.spare: Spare | None = None
        self.exiting: list[int] = []  # workers done with their tests, not yet reaped
        self.index = {id(item): i for i, item in enumerate(session.items)}

    def run(self) -> None:
        # Objects alive now are never collected in a worker: a collection there would touch
        # (and so copy) every page of the parent's heap.
        gc.freeze()
        try:
            while self.queue or self.running:
                if self.session.shouldfail or self.session.shouldstop:
                    self.queue.clear()
                while self.queue and self._busy() < self.settings.workers.value:
                    self._start(self.queue.popleft())
                if self.running:  # a refused fork starts nothing: never wait on no worker
                    self._poll()
        except BaseException:
            for worker in list(self.running.values()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
                self._reap(worker, reason=None)
            raise
        finally:
            self._retire_spare()
            self._collect_exited(wait=True)
            self.selector.close()
            with contextlib.suppress(OSError):
                for name in os.listdir(self.tmpdir):
                    os.unlink(os.path.join(self.tmpdir, name))
                os.rmdir(self.tmpdir)

    def _busy(self) -> int:
        """Workers still running tests. One that finished its last test is exiting (tearing
        down a large address space takes milliseconds): its slot is free already."""
        return sum(len(w.finished) < len(w.group.items) for w in self.running.values())

    # Starting ---------------------------------------------------------------------------------
    def _start(self, group: Group) -> None:
        spare, self.spare = self.spare, None
        if spare is None:
            spare = self._fork()
        if spare is None:
            _ok, why = cuda_untouched()
            message = MSG_CUDA_TOUCHED.format(why=why)
            for item in group.items:
                self._synthetic(item, "setup", message, start=True, signature="worker: no fork")
            return
        order = json.dumps(
            {"order": group.order, "items": [self.index[id(i)] for i in group.items]}
        )
        with contextlib.suppress(OSError):  # a spare that died is reaped as a crash below
            os.write(spare.ctrl, order.encode() + b"\n")
        os.close(spare.ctrl)
        worker = Worker(pid=spare.pid, group=group, fd=spare.fd, dump_path=spare.dump_path)
        self._arm(worker, 0, applying_order=group.order is not None)
        self.running[spare.fd] = worker
        self.selector.register(spare.fd, selectors.EVENT_READ, worker)
        if self.queue:
            self.spare = self._fork()

    def _fork(self) -> Spare | None:
        """Fork a worker that waits for its group; None when the parent is not provably clean."""
        ok, _why = cuda_untouched()
        if not ok:
            return None
        rfd, wfd = os.pipe()
        ctrl_r, ctrl_w = os.pipe()
        fd, dump = tempfile.mkstemp(prefix="worker-", suffix=".dump", dir=self.tmpdir)
        os.close(fd)
        inherited = [*self.running, *((self.spare.ctrl, self.spare.fd) if self.spare else ())]
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Python 3.12 warns about fork() in a multi-threaded process; the children run no
            # thread of the parent's and exec nothing, which is the case the warning allows.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            # Keep no end of another worker's pipes: a control pipe held open here would never
            # reach end-of-file in the worker it belongs to.
            for other in (rfd, ctrl_w, *inherited):
                with contextlib.suppress(OSError):
                    os.close(other)
            _child(self.session, self.settings, wfd, dump, ctrl_r)
        os.close(wfd)
        os.close(ctrl_r)
        os.set_blocking(rfd, False)
        return Spare(pid=pid, ctrl=ctrl_w, fd=rfd, dump_path=dump)

    def _collect_exited(self, *, wait: bool = False) -> None:
        """Reap workers that finished their tests and exited (all of them with ``wait``)."""
        still = []
        for pid in self.exiting:
            try:
                done, _status = os.waitpid(pid, 0 if wait else os.WNOHANG)
            except ChildProcessError:
                continue
            if done == 0:
                still.append(pid)
        self.exiting = still

    def _retire_spare(self) -> None:
        spare, self.spare = self.spare, None
        if spare is None:
            return
        with contextlib.suppress(OSError):
            os.close(spare.ctrl)
            os.close(spare.fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(spare.pid, 0)

    def _arm(self, worker: Worker, index: int, *, applying_order: bool = False) -> None:
        if index >= len(worker.group.items):
            worker.deadline = None
            return
        timeout, source = item_timeout(worker.group.items[index], self.settings)
        if applying_order and 0 < timeout < ORDER_START_ALLOWANCE:
            timeout = ORDER_START_ALLOWANCE
            source = f"{source}, raised to {ORDER_START_ALLOWANCE:g} s while the order is applied"
        worker.timeout, worker.timeout_source = timeout, source
        worker.deadline = time.monotonic() + timeout if timeout > 0 else None

    # Polling ----------------------------------------------------------------------------------
    def _poll(self) -> None:
        deadlines = [w.deadline for w in self.running.values() if w.deadline is not None]
        wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        for key, _mask in self.selector.select(timeout=wait if wait is None else min(wait, 1.0)):
            worker: Worker = key.data
            try:
                chunk = os.read(worker.fd, 1 << 16)
            except BlockingIOError:
                continue
            if chunk:
                worker.buffer += chunk
                *lines, worker.buffer = worker.buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._message(worker, json.loads(line))
            else:
                self._reap(worker, reason=None)
        now = time.monotonic()
        for worker in list(self.running.values()):
            if worker.deadline is not None and now >= worker.deadline:
                self._hung(worker)

    def _message(self, worker: Worker, msg: dict[str, Any]) -> None:
        index = int(msg["index"])
        item = worker.group.items[index] if 0 <= index < len(worker.group.items) else None
        event = msg["event"]
        if event == "start" and item is not None:
            worker.index, worker.phase = index, "setup"
            worker.started.add(index)
            self._arm(worker, index)
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        elif event == "phase":
            worker.phase = str(msg["phase"])
            self._arm(worker, index)
        elif event == "report" and item is not None:
            data = msg["data"]
            if isinstance(data.get("longrepr"), list):  # JSON made the skip tuple a list
                data["longrepr"] = tuple(data["longrepr"])
            report = self.config.hook.pytest_report_from_serializable(config=self.config, data=data)
            item.ihook.pytest_runtest_logreport(report=report)
        elif event == "done" and item is not None:
            worker.finished.add(index)
            item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    # Endings ----------------------------------------------------------------------------------
    def _hung(self, worker: Worker) -> None:
        """Dump the worker's stacks (SIGUSR1 -> faulthandler), then kill it."""
        worker.hung = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGUSR1)
            end = time.monotonic() + 2.0
            while time.monotonic() < end and os.path.getsize(worker.dump_path) == 0:
                time.sleep(0.02)
            time.sleep(0.05)
            os.kill(worker.pid, signal.SIGKILL)
        item = worker.group.items[max(worker.index, 0)]
        reason = MSG_HUNG.format(
            pid=worker.pid,
            nodeid=item.nodeid,
            timeout=worker.timeout,
            phase=worker.phase,
            source=worker.timeout_source,
        )
        self._reap(worker, reason=reason)

    def _reap(self, worker: Worker, reason: str | None) -> None:
        """The worker's pipe closed (or we killed it): collect it, report what it left undone."""
        self.selector.unregister(worker.fd)
        os.close(worker.fd)
        del self.running[worker.fd]
        items = worker.group.items
        undone = [i for i in range(len(items)) if i not in worker.finished]
        if not undone:
            # A worker that did all its tests may still be releasing its CUDA context (the driver
            # does that when the process closes its device files): don't wait for it here.
            self.exiting.append(worker.pid)
            self._collect_exited()
            return
        _pid, status = os.waitpid(worker.pid, 0)
        first = undone[0]
        if first in worker.started:
            if reason is None:
                reason = MSG_CRASHED.format(
                    pid=worker.pid,
                    nodeid=items[first].nodeid,
                    phase=worker.phase,
                    how=_describe_status(status),
                )
            dump = _read(worker.dump_path)
            how = "hung" if worker.hung else _describe_status(status).split(" (")[-1].rstrip(")")
            self._synthetic(
                items[first],
                worker.phase,
                reason,
                start=False,
                dump=dump,
                signature=f"worker: {'hung' if worker.hung else 'crashed'} in {worker.phase}"
                + ("" if worker.hung else f" ({how})"),
            )
            rest = items[first + 1 :]
        else:
            # Died before it started an item: the order's recipe or the worker itself failed.
            dump = _read(worker.dump_path)
            message = reason or (
                f"worker process (pid {worker.pid}) for order {worker.group.order} died before "
                f"its first test: {_describe_status(status)}"
            )
            self._synthetic(
                items[first], "setup", message, start=True, dump=dump, signature="worker: died"
            )
            rest = items[first + 1 :]
        if rest:
            self.queue.appendleft(Group(worker.group.order, rest))

    def _synthetic(
        self,
        item: pytest.Item,
        phase: str,
        message: str,
        *,
        start: bool,
        signature: str,
        dump: str = "",
    ) -> None:
        if start:
            item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        sections = [("worker stacks (faulthandler)", dump)] if dump.strip() else []
        longrepr = message + (f"\n\n{dump.strip()}" if dump.strip() else "")
        report = TestReport(
            nodeid=item.nodeid,
            location=item.location,
            keywords={k: 1 for k in item.keywords},
            outcome="failed",
            longrepr=longrepr,
            when=_when(phase),
            sections=sections,
        )
        report.user_properties.append(("trtctx_signature", signature))
        item.ihook.pytest_runtest_logreport(report=report)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def _when(phase: str) -> Literal["setup", "call", "teardown"]:
    if phase == "call":
        return "call"
    if phase == "teardown":
        return "teardown"
    return "setup"


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by signal {sig} ({name})"
    return f"exited with status {os.WEXITSTATUS(status)}"


def _read(path: str) -> str:
    with contextlib.suppress(OSError), open(path, errors="replace") as fh:
        return fh.read()[-20000:]
    return ""
