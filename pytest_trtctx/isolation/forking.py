"""The real side of isolation: workers forked from the pytest process, results into pytest's
hooks. The rules are the :class:`~pytest_trtctx.isolation.scheduler.Scheduler`'s; this module only
forks, reads pipes, signals and waits (:class:`Forker`), and reports (:class:`HookSink`).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import selectors
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
from _pytest.reports import TestReport

from ..checks.outcomes import ORDER_PROPERTY, SIGNATURE_PROPERTY
from ..cuda.probe import cuda_untouched
from ..messages import MSG_CUDA_TOUCHED
from ..settings import plan
from ..settings.config import Settings
from . import proctree, summary_imports
from .channel import Sections
from .grouping import groups
from .guard import Guard, end_sessions
from .scheduler import Scheduler, Spare, Worker, when_of
from .warning_wire import replay_warning
from .worker import Group, run_child

#: The signals that end a run as ^C does (:func:`ended_by_signals`).
ENDING_SIGNALS = frozenset({signal.SIGTERM, signal.SIGHUP})

#: How long a hung worker gets to write its stacks after SIGUSR1 before it is killed.
DUMP_WAIT = 2.0
#: The most read from a report pipe at once, and the pipe's capacity where the system allows it.
READ_SIZE = 1 << 20
#: fcntl's F_SETPIPE_SZ (Linux).
F_SETPIPE_SZ = 1031
#: Where no pidfd watches a worker's exit: how often ready() looks for it (seconds).
POLL_EXITS = 0.1


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, without reaping it."""
    try:
        found = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return found is not None


class Forker:
    """:class:`Processes` by ``os.fork`` of the pytest process, which must be CUDA-clean."""

    def __init__(self, session: pytest.Session, culprit: Callable[[], str]) -> None:
        self.session = session
        self.culprit = culprit
        self.selector = selectors.DefaultSelector()
        self.fds: set[int] = set()  # every pipe end and dump file this parent holds
        self.pid = os.getpid()
        self.pidfds: dict[int, int] = {}  # report pipe -> the worker's pidfd, where watched
        self.dead: set[int] = set()  # report pipes whose worker has exited
        self.pipe_pids: dict[int, int] = {}  # report pipe -> its worker
        self.ended: set[int] = set()  # workers this process killed (with what they started)
        self.guard: Guard | None = None  # started with the first worker

    def refusal(self) -> str:
        return MSG_CUDA_TOUCHED.format(why=cuda_untouched()[1], culprit=self.culprit())

    def spare(self) -> Spare | None:
        ok, _why = cuda_untouched()
        if not ok:
            return None
        if self.guard is None:
            self.guard = Guard()
            self.fds.add(self.guard.fd)
        rfd, wfd = os.pipe()
        with contextlib.suppress(OSError):  # larger than the default where allowed: fewer reads
            fcntl.fcntl(rfd, F_SETPIPE_SZ, READ_SIZE)
        ctrl_r, ctrl_w = os.pipe()
        # The worker's stacks go to a file with no name (unlinked at once): nothing is left on
        # disk whatever happens to either process.
        with tempfile.TemporaryFile(prefix="trtctx-stacks-") as named:
            dump = os.dup(named.fileno())
        sys.stdout.flush()
        sys.stderr.flush()
        # SIGTERM/SIGHUP wait while fork() runs: the handler's exception, raised inside the
        # interpreter's at-fork handlers, would be swallowed there ("Exception ignored") and
        # the signal lost. Delivered after the fork, it ends the run as it should.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, ENDING_SIGNALS)
        pid = proctree.fork()
        if pid == 0:
            for sig in ENDING_SIGNALS:  # the parent's handler is not the worker's
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            # Keep no end of another worker's pipes: a control pipe held open here would never
            # reach end-of-file in the worker it belongs to.
            for other in (rfd, ctrl_w, *self.fds):
                with contextlib.suppress(OSError):
                    os.close(other)
            run_child(self.session, wfd, dump, ctrl_r, self.pid)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        os.close(wfd)
        os.close(ctrl_r)
        os.set_blocking(rfd, False)
        self.fds |= {rfd, ctrl_w, dump}
        self.pipe_pids[rfd] = pid
        self.guard.add(pid)
        return Spare(pid=pid, ctrl=ctrl_w, fd=rfd, dump=dump)

    def all_started(self) -> None:
        summary_imports.import_now(self.session.config)

    def assign(self, spare: Spare, message: bytes) -> None:
        with contextlib.suppress(OSError):  # a spare that died is reaped as a crash
            os.write(spare.ctrl, message)
        self._close_fd(spare.ctrl)
        self.selector.register(spare.fd, selectors.EVENT_READ)
        # A test's end must not depend on who else holds the pipe (a process that left the
        # worker's group keeps it open): the worker's own exit is watched too.
        try:
            pidfd = os.pidfd_open(spare.pid)
        except OSError:  # the kernel has no pidfd: ready() asks waitid instead
            return
        self.pidfds[spare.fd] = pidfd
        self.selector.register(pidfd, selectors.EVENT_READ, data=spare.fd)

    def retire(self, spare: Spare) -> None:
        self._close_fd(spare.ctrl)
        self._close_fd(spare.fd)
        self._close_fd(spare.dump)
        self.kill(spare.pid)
        self.wait(spare.pid, block=True)

    def ready(self, timeout: float | None) -> list[int]:
        pipes = [int(key.fd) for key in self.selector.get_map().values() if key.data is None]
        unwatched = [fd for fd in pipes if fd not in self.pidfds]
        if unwatched:  # some exits are not watched: look for them often
            timeout = POLL_EXITS if timeout is None else min(timeout, POLL_EXITS)
        found = set()
        for key, _mask in self.selector.select(timeout=timeout):
            if key.data is not None:  # a worker's pidfd: it exited
                self.dead.add(int(key.data))
                found.add(int(key.data))
            else:
                found.add(int(key.fd))
        for fd in unwatched:
            pid = self.pipe_pids.get(fd)
            if pid is not None and _exited(pid):
                self.dead.add(fd)
                found.add(fd)
        return sorted(found)

    def read(self, fd: int) -> bytes | None:
        """What the pipe holds; end-of-file once the worker exited and its bytes are read, even
        if another process still holds the pipe open."""
        try:
            return os.read(fd, READ_SIZE)
        except BlockingIOError:
            return b"" if fd in self.dead else None

    def close(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(fd)
        pidfd = self.pidfds.pop(fd, None)
        if pidfd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(pidfd)
            os.close(pidfd)
        self.dead.discard(fd)
        self.pipe_pids.pop(fd, None)
        self._close_fd(fd)

    def _close_fd(self, fd: int) -> None:
        self.fds.discard(fd)
        with contextlib.suppress(OSError):
            os.close(fd)

    def dump_stacks(self, worker: Worker) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGUSR1)
            end = time.monotonic() + DUMP_WAIT
            while time.monotonic() < end and os.fstat(worker.dump).st_size == 0:
                time.sleep(0.02)
            time.sleep(0.05)

    def kill(self, pid: int) -> None:
        """End the worker and everything its tests started: every process below it (one that
        left its session included: the worker adopts orphans) and its process group."""
        proctree.end_tree(pid)
        self.ended.add(pid)

    def end_session(self, pid: int) -> None:
        """Every process of worker ``pid``'s session (its tests' orphans, where it was dying of
        itself when :meth:`kill` reached it): a sweep of /proc, so only where a worker died with
        tests undone. Before the reap, while no new process can take the pid that names it."""
        end_sessions({pid})

    def end_test(self, pid: int) -> None:
        """A test of worker ``pid`` ended: end what it started (not the worker). Every process
        of its group is below it (it adopts their orphans), so nothing else is searched."""
        proctree.end_below(pid)

    def wait(self, pid: int, *, block: bool) -> int | None:
        flags = 0 if block else os.WNOHANG
        try:
            if pid not in self.ended and os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | flags):
                # It died of itself (a crash, a test's exit) before this process could end what
                # its tests started: that was orphaned, but is still in its session. Ended before
                # the reap, while no new process can take the pid that names the session.
                end_sessions({pid})
            done, status = os.waitpid(pid, flags)
        except ChildProcessError:  # reaped already: its session was dealt with then
            done, status = pid, None
        if done:
            self.ended.discard(pid)
            if self.guard is not None:
                self.guard.forget(pid)
        return status if done else None

    def stacks(self, worker: Worker) -> str:
        try:
            size = os.fstat(worker.dump).st_size
            return os.pread(worker.dump, size, max(0, size - 20000)).decode(errors="replace")
        except OSError:
            return ""

    def release(self, worker: Worker) -> None:
        self._close_fd(worker.dump)

    def close_all(self) -> None:
        for pidfd in self.pidfds.values():
            os.close(pidfd)
        self.pidfds.clear()
        self.selector.close()
        if self.guard is not None:
            self.fds.discard(self.guard.fd)
            self.guard.close()
            self.guard = None
        for fd in list(self.fds):
            self._close_fd(fd)


@contextlib.contextmanager
def ended_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as ^C does: workers are killed, results so far kept."""

    def stop(signum: int, _frame: object) -> None:
        pytest.exit(f"pytest-trtctx: {signal.Signals(signum).name} received", returncode=2)

    old = {sig: signal.signal(sig, stop) for sig in ENDING_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class EndedBySignals:
    """Registered in pytest-xdist's controller, which runs no test and so never enters
    :func:`ended_by_signals`: SIGTERM and SIGHUP end the run there as in a run without xdist
    (the results so far and the summary, exit 2), instead of killing the controller outright.
    Its workers are ended by xdist's own shutdown, and end what they forked as any run does."""

    def __init__(self) -> None:
        self._signals = ended_by_signals()
        self._signals.__enter__()

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self) -> None:
        self._signals.__exit__(None, None, None)


class WorkerWarning(pytest.PytestWarning):
    """Something went wrong around a test's worker that did not change the test's result."""


class HookSink:
    """:class:`Sink` into pytest's reporting hooks, as if the tests had run here."""

    def __init__(self, session: pytest.Session) -> None:
        self.session = session
        self.config = session.config
        self.sections = Sections()

    def start(self, item: pytest.Item) -> None:
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)

    def report(self, item: pytest.Item, data: dict[str, Any]) -> None:
        data = self.sections.expand(item.nodeid, data)
        if isinstance(data.get("longrepr"), list):  # JSON made the skip tuple a list
            data["longrepr"] = tuple(data["longrepr"])
        report = self.config.hook.pytest_report_from_serializable(config=self.config, data=data)
        item.ihook.pytest_runtest_logreport(report=report)

    def fail(
        self,
        item: pytest.Item,
        when: str,
        message: str,
        signature: str,
        stacks: str,
        duration: float,
    ) -> None:
        self._log(
            item,
            "failed",
            message + (f"\n\n{stacks.strip()}" if stacks.strip() else ""),
            when_of(when),
            [(SIGNATURE_PROPERTY, signature)],
            sections=[("worker stacks (faulthandler)", stacks)] if stacks.strip() else [],
            duration=duration,
        )

    def skip(self, item: pytest.Item, message: str) -> None:
        path, lineno, _name = item.location
        self._log(
            item,
            "skipped",
            (str(path), (lineno or 0) + 1, f"Skipped: {message}"),
            "setup",
            [(ORDER_PROPERTY, {"applied": False, "fresh": False, "why_not": message})],
        )

    def _log(
        self,
        item: pytest.Item,
        outcome: Literal["failed", "skipped"],
        longrepr: Any,
        when: Literal["setup", "call", "teardown"],
        properties: list[tuple[str, object]],
        **more: Any,
    ) -> None:
        """A report of the scheduler's own, carrying what the item already carries for its
        readers (its plan, recorded at collection) and ``properties``."""
        report = TestReport(
            nodeid=item.nodeid,
            location=item.location,
            keywords={k: 1 for k in item.keywords},
            outcome=outcome,
            longrepr=longrepr,
            when=when,
            user_properties=[*item.user_properties, *properties],
            **more,
        )
        item.ihook.pytest_runtest_logreport(report=report)

    def warning(self, item: pytest.Item | None, data: dict[str, Any]) -> None:
        replay_warning(self.config, data, item.nodeid if item is not None else "")

    def warn(self, item: pytest.Item, message: str) -> None:
        self.config.hook.pytest_warning_recorded.call_historic(
            kwargs={
                "warning_message": warnings.WarningMessage(
                    WorkerWarning(message), WorkerWarning, str(item.path), item.location[1] or 0
                ),
                "when": "runtest",
                "nodeid": item.nodeid,
                "location": item.location,
            }
        )

    def finish(self, item: pytest.Item) -> None:
        self.sections.forget(item.nodeid)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def stop_requested(self) -> bool:
        return bool(self.session.shouldfail or self.session.shouldstop)


def timeout_of(item: pytest.Item) -> tuple[float, str]:
    planned = plan.of(item)
    return planned.timeout.value, planned.timeout.source


def run_isolated(session: pytest.Session, settings: Settings, culprit: Callable[[], str]) -> None:
    """Run the session's items in forked workers, as the settings ask."""
    items = list(session.items)
    processes = Forker(session, culprit)
    # Objects alive now are never collected in a worker: a collection there would touch (and
    # so copy) every page of the parent's heap.
    gc.freeze()
    try:
        queue = groups(items, settings)
        workers = settings.workers.value
        with ended_by_signals():
            Scheduler(items, queue, workers, processes, HookSink(session), timeout_of).run()
        # As pytest's own loop ends a run stopped by -x / --maxfail (its summary line).
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
    finally:
        processes.close_all()


class ForkEachTest:
    """Inside an xdist worker (a fresh interpreter that never touched CUDA): each test the
    controller hands over runs in a process forked from it, as pytest-forked does under xdist.
    Registered as ``trtctx-fork-each-test`` there when tests are isolated."""

    def __init__(self, session: pytest.Session, culprit: Callable[[], str]) -> None:
        self.session = session
        self.forker: Forker | None = None
        self.culprit = culprit

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool:
        if self.forker is None:
            from ..cuda import probe
            from .worker import preload

            probe.machine()  # once, in a child process; the forked tests inherit the answer
            preload()
            self.forker = Forker(self.session, self.culprit)
            gc.freeze()
        planned = plan.of(item)
        items = list(self.session.items)
        queue = [Group(planned.order, [item], trace=planned.trace.value)]
        Scheduler(items, queue, 1, self.forker, HookSink(self.session), timeout_of).run()
        return True

    def pytest_sessionfinish(self) -> None:
        if self.forker is not None:
            self.forker.close_all()
