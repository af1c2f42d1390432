"""The parent side of isolation: fork workers where CUDA was never initialised, schedule their
tests, and turn what they send (or how they end) into pytest reports.

Why fork, and from where: a new Python that imports torch costs seconds; a fork of a parent that
imported torch but never initialised CUDA costs milliseconds (``docs/isolation.md``). The pytest
process collects the tests and never touches CUDA; before every fork
:func:`~pytest_trtctx.cuda.probe.cuda_untouched` proves that, and a fork is refused (the tests fail
with the reason) if the proof fails. Children are never forked from a process that initialised
CUDA.

A worker (:mod:`.worker`) runs a :class:`~pytest_trtctx.isolation.worker.Group` of items: one item
for ``--trtctx-isolate=test``, all items of one order for ``order``. A worker that dies becomes a
failed report naming the test and the phase, a worker that makes no progress for the timeout is
dumped (faulthandler) and killed, and the items it had not reached go to a new worker. The run
goes on.

The :class:`Scheduler` decides; it reaches processes only through :class:`Processes` and pytest
only through :class:`Sink`, so that its rules are tested with fakes (as pytest-xdist tests its
scheduler with ``MockNode``); the real ones, which fork and report, are in :mod:`.forking`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from ..messages import (
    MSG_CRASHED,
    MSG_FOREIGN_BYTES,
    MSG_HUNG,
    MSG_STICKY,
    MSG_WORKER_REPLACED,
)
from ..wait_status import describe_status
from .channel import Reader
from .worker import Group, group_message

#: Seconds a worker may take to apply its order before it counts as hung, when the test's own
#: timeout is shorter. Applying an order creates a CUDA context, which the driver serialises
#: machine-wide: with many processes creating contexts at once this waits for the others, which
#: is contention, not a hang; a test's timeout is about the test.
ORDER_START_ALLOWANCE = 60.0


@dataclass
class Spare:
    """A worker forked ahead of time, waiting for its tests on ``ctrl``: the fork then overlaps
    the test that runs meanwhile instead of standing between two tests."""

    pid: int
    ctrl: int  # the parent writes the group here, as one JSON line, then closes it
    fd: int  # the worker's report pipe
    dump: Any  # where the worker's faulthandler writes its stacks


@dataclass
class Worker:
    """A worker that has its group, as the parent sees it."""

    pid: int
    group: Group
    fd: int
    dump: Any
    reader: Reader = field(default_factory=Reader)
    index: int = -1  # the item in progress
    phase: str = "start"
    started: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    deadline: float | None = None
    timeout: float = 0.0
    timeout_source: str = ""
    hung: bool = False
    #: Set when the worker retired itself after a sticky CUDA error (what, and in which test).
    retired: str | None = None
    started_at: float = 0.0  # when the item in progress started
    reruns: set[int] = field(default_factory=set)  # items whose attempt asked to run again


class Processes(Protocol):
    """What the scheduler needs of worker processes."""

    def spare(self) -> Spare | None:
        """A new worker waiting for its group; None when forking is refused."""

    def refusal(self) -> str:
        """Why forking is refused, as the skip reason of the tests that cannot run."""

    def assign(self, spare: Spare, message: bytes) -> None:
        """Send the spare its group; from now on its report pipe is watched."""

    def retire(self, spare: Spare) -> None:
        """End a spare that never got a group."""

    def all_started(self) -> None:
        """Every group so far has its worker: what the end of the run needs can be prepared now.
        A group made later (the rest of one whose worker crashed) still gets a spare."""

    def ready(self, timeout: float | None) -> list[int]:
        """Report pipes with something to read (or closed), waiting at most ``timeout``."""

    def read(self, fd: int) -> bytes | None:
        """What the pipe holds: None when nothing yet, ``b""`` when the worker closed it."""

    def close(self, fd: int) -> None:
        """Stop watching a report pipe and close it."""

    def dump_stacks(self, worker: Worker) -> None:
        """Ask a worker for its threads' stacks (faulthandler) and wait a little for them."""

    def kill(self, pid: int) -> None:
        """End the worker and every process its tests started."""

    def end_test(self, pid: int) -> None:
        """A test of the worker ended: end the processes it started (not the worker)."""

    def end_session(self, pid: int) -> None:
        """End every process of the worker's session, before it is reaped: one that was dying
        of itself when it was killed left what its tests started orphaned, out of reach of the
        worker's tree but still in its session."""

    def release(self, worker: Worker) -> None:
        """The worker was reaped: free what was kept for it."""

    def wait(self, pid: int, *, block: bool) -> int | None:
        """The worker's exit status; None while it runs (``block`` False) or if unknown."""

    def stacks(self, worker: Worker) -> str:
        """What the worker's faulthandler wrote."""

    def close_all(self) -> None:
        """Release everything still held."""


class Sink(Protocol):
    """Where the scheduler's results go."""

    def start(self, item: Any) -> None: ...

    def report(self, item: Any, data: dict[str, Any]) -> None:
        """A report the worker serialized."""

    def fail(
        self, item: Any, when: str, message: str, signature: str, stacks: str, duration: float
    ) -> None:
        """A failed report of the scheduler's own: a crash, a hang (``duration``: since the
        test started)."""

    def skip(self, item: Any, message: str) -> None:
        """A skipped report of the scheduler's own: the test cannot run in a fresh process."""

    def warning(self, item: Any, data: dict[str, Any]) -> None:
        """A warning the worker recorded (serialized)."""

    def warn(self, item: Any, message: str) -> None:
        """A warning of the scheduler's own about ``item``."""

    def finish(self, item: Any) -> None: ...

    def stop_requested(self) -> bool:
        """``-x`` / ``--maxfail`` reached: schedule nothing more."""


class Scheduler:
    """Give the groups to workers, at most ``workers`` at once, and follow them to their end."""

    def __init__(
        self,
        items: list[Any],
        queue: list[Group],
        workers: int,
        processes: Processes,
        sink: Sink,
        timeout_of: Callable[[Any], tuple[float, str]],
    ) -> None:
        self.queue: deque[Group] = deque(queue)
        self.workers = workers
        self.processes = processes
        self.sink = sink
        self.timeout_of = timeout_of
        self.running: dict[int, Worker] = {}
        self.spare: Spare | None = None
        self.exiting: list[int] = []  # workers done with their tests, not yet reaped
        self.stopper: Worker | None = None  # the worker whose test reached -x / --maxfail
        self.all_started = False  # processes.all_started() was called
        self.index = {id(item): i for i, item in enumerate(items)}

    def run(self) -> None:
        try:
            while self.queue or self.running:
                if self.sink.stop_requested():
                    # -x / --maxfail reached: as pytest stops, nothing more runs or is reported
                    # (a test another worker is running is ended, as pytest-xdist ends it); the
                    # test that reached it is followed to its end, as pytest finishes it.
                    self.queue.clear()
                    self._end_running(keep=self._finishing())
                while self.queue and self._busy() < self.workers:
                    self._start(self.queue.popleft())
                if not self.queue and not self.all_started:
                    self.all_started = True
                    self.processes.all_started()
                if self.running:  # a refused fork starts nothing: never wait on no worker
                    self._poll()
        except BaseException:
            self._end_running()
            raise
        finally:
            if self.spare is not None:
                self.processes.retire(self.spare)
                self.spare = None
            self._collect_exited(block=True)

    def _finishing(self) -> Worker | None:
        """The worker whose test stopped the run, while that test is not finished."""
        worker = self.stopper
        if worker is None or worker.fd not in self.running or worker.index in worker.finished:
            return None
        return worker

    def _end_running(self, keep: Worker | None = None) -> None:
        for worker in list(self.running.values()):
            if worker is keep:
                continue
            self.processes.kill(worker.pid)
            # One that was dying of itself meanwhile left its test's orphans out of reach of the
            # tree kill, in its session (as in _reap).
            self.processes.end_session(worker.pid)
            self.processes.close(worker.fd)
            self.processes.wait(worker.pid, block=True)
            self.processes.release(worker)
        self.running = {} if keep is None else {keep.fd: keep}

    def _busy(self) -> int:
        """Workers still running tests. One that finished its last test is exiting (tearing
        down a large address space takes milliseconds): its slot is free already."""
        return sum(len(w.finished) < len(w.group.items) for w in self.running.values())

    # Starting ---------------------------------------------------------------------------------
    def _start(self, group: Group) -> None:
        spare, self.spare = self.spare, None
        if spare is None:
            spare = self.processes.spare()
        if spare is None:
            message = self.processes.refusal()
            for item in group.items:
                self.sink.start(item)
                self.sink.skip(item, message)
                self.sink.finish(item)
            return
        indices = [self.index[id(i)] for i in group.items]
        sent = group_message(group.order, indices, group.note, group.trace, group.attempt)
        self.processes.assign(spare, sent)
        worker = Worker(pid=spare.pid, group=group, fd=spare.fd, dump=spare.dump)
        self._arm(worker, 0, applying_order=group.order is not None)
        self.running[spare.fd] = worker
        if self.queue:
            self.spare = self.processes.spare()

    def _collect_exited(self, *, block: bool = False) -> None:
        """Reap workers that finished their tests and exited (all of them with ``block``)."""
        if block:
            for pid in self.exiting:
                self.processes.wait(pid, block=True)
            self.exiting = []
        else:
            self.exiting = [p for p in self.exiting if self.processes.wait(p, block=False) is None]

    def _arm(self, worker: Worker, index: int, *, applying_order: bool = False) -> None:
        if index >= len(worker.group.items):
            worker.deadline = None
            return
        timeout, source = self.timeout_of(worker.group.items[index])
        if applying_order and 0 < timeout < ORDER_START_ALLOWANCE:
            timeout = ORDER_START_ALLOWANCE
            source = f"{source}, raised to {ORDER_START_ALLOWANCE:g} s while the order is applied"
        worker.timeout, worker.timeout_source = timeout, source
        worker.deadline = time.monotonic() + timeout if timeout > 0 else None

    # Polling ----------------------------------------------------------------------------------
    def _poll(self) -> None:
        deadlines = [w.deadline for w in self.running.values() if w.deadline is not None]
        wait = min(1.0, max(0.0, min(deadlines) - time.monotonic())) if deadlines else None
        for fd in self.processes.ready(wait):
            worker = self.running.get(fd)
            if worker is None or (self.stopper is not None and worker is not self.stopper):
                continue  # gone, or the run was stopped by another worker's test
            chunk = self.processes.read(fd)
            if chunk is None:
                continue
            if chunk:
                for message in worker.reader.feed(chunk):
                    self._message(worker, message)
                    if self.sink.stop_requested():
                        self.stopper = self.stopper or worker
                        if worker.index in worker.finished:
                            return  # what follows the test that stopped the run is not reported
                if worker.reader.in_frame and worker.deadline is not None:
                    # A message is arriving: the worker is not hung, whatever the parent's pace
                    # (a test's captured output of hundreds of megabytes takes seconds to cross).
                    worker.deadline = max(worker.deadline, time.monotonic() + worker.timeout)
            else:
                worker.reader.finish()
                self._reap(worker, reason=None)
        now = time.monotonic()
        for worker in list(self.running.values()):
            if self.stopper is not None and worker is not self.stopper:
                continue  # to be ended, not reported
            if worker.deadline is not None and now >= worker.deadline:
                self._hung(worker)

    def _message(self, worker: Worker, msg: dict[str, Any]) -> None:
        index = int(msg["index"])
        item = worker.group.items[index] if 0 <= index < len(worker.group.items) else None
        event = msg["event"]
        if event == "start" and item is not None:
            worker.index, worker.phase = index, "setup"
            worker.started.add(index)
            worker.started_at = time.monotonic()
            self._arm(worker, index)
            self.sink.start(item)
        elif event == "phase":
            worker.phase = str(msg["phase"])
            self._arm(worker, index)
        elif event == "report" and item is not None:
            self.sink.report(item, msg["data"])
        elif event == "rerun" and item is not None:
            worker.reruns.add(index)
        elif event == "done" and item is not None:
            self._foreign(worker, item)
            worker.finished.add(index)
            self.sink.finish(item)
            if index in worker.reruns:  # pytest-rerunfailures: again, in a fresh worker
                rerun = replace(
                    worker.group, items=[item], note=None, attempt=worker.group.attempt + 1
                )
                self.queue.appendleft(rerun)
            if len(worker.finished) == len(worker.group.items):
                self.processes.kill(worker.pid)  # with whatever its last test left running
            else:
                self.processes.end_test(worker.pid)
        elif event == "interrupt":
            raise KeyboardInterrupt(f"in {item.nodeid if item is not None else 'a worker'}")
        elif event == "warning":
            self.sink.warning(item, msg)
        elif event == "retire" and item is not None:
            what = MSG_STICKY.format(error=msg["reason"])
            worker.retired = MSG_WORKER_REPLACED.format(what=what, nodeid=item.nodeid)

    def _foreign(self, worker: Worker, item: Any) -> None:
        """Bytes on the pipe that the worker did not frame (something its test ran wrote them):
        ignored, and named in a warning on the test in progress."""
        count, sample = worker.reader.take_foreign()
        if count:
            self.sink.warn(
                item,
                MSG_FOREIGN_BYTES.format(
                    count=count, pid=worker.pid, nodeid=item.nodeid, sample=sample
                ),
            )

    # Endings ----------------------------------------------------------------------------------
    def _hung(self, worker: Worker) -> None:
        """Dump the worker's stacks, then kill it."""
        worker.hung = True
        self.processes.dump_stacks(worker)
        self.processes.kill(worker.pid)
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
        self.processes.close(worker.fd)
        self._foreign(worker, worker.group.items[max(worker.index, 0)])
        del self.running[worker.fd]
        items = worker.group.items
        undone = [i for i in range(len(items)) if i not in worker.finished]
        if worker.retired is not None and undone and undone[0] not in worker.started:
            # It stopped on purpose after a sticky CUDA error: the rest go to a fresh worker.
            self.processes.kill(worker.pid)
            self.exiting.append(worker.pid)
            self._collect_exited()
            self.processes.release(worker)
            rest = [items[i] for i in undone]
            self.queue.appendleft(replace(worker.group, items=rest, note=worker.retired))
            return
        if not undone:
            # A worker that did all its tests may still be releasing its CUDA context (the driver
            # does that when the process closes its device files): don't wait for it here.
            self.exiting.append(worker.pid)
            self._collect_exited()
            self.processes.release(worker)
            return
        # Its pipe closed with tests undone: it died, or closed the pipe and lives on (a test
        # that closed its file descriptors); either way it can report nothing more.
        status = self.processes.wait(worker.pid, block=False)
        if status is None:  # not reaped: it may be dying of itself all the same
            self.processes.kill(worker.pid)
            self.processes.end_session(worker.pid)
            status = self.processes.wait(worker.pid, block=True)
        how = describe_status(status)
        first = undone[0]
        stacks = self.processes.stacks(worker)
        if first in worker.started:
            if reason is None:
                reason = MSG_CRASHED.format(
                    pid=worker.pid, nodeid=items[first].nodeid, phase=worker.phase, how=how
                )
            ending = "hung" if worker.hung else "crashed"
            signature = f"worker: {ending} in {worker.phase}"
            if not worker.hung:
                ending += f" ({how.split(' (')[-1].rstrip(')')})"
                signature += f" ({how.split(' (')[-1].rstrip(')')})"
            took = time.monotonic() - worker.started_at
            self.sink.fail(items[first], when_of(worker.phase), reason, signature, stacks, took)
        else:
            # Died before it started an item: the order's recipe or the worker itself failed.
            message = reason or (
                f"worker process (pid {worker.pid}) for order {worker.group.order} died before "
                f"its first test: {how}"
            )
            self.sink.start(items[first])
            self.sink.fail(items[first], "setup", message, "worker: died", stacks, 0.0)
            ending = "died before its first test"
        self.sink.finish(items[first])
        self.processes.release(worker)
        rest = items[first + 1 :]
        if rest:
            note = MSG_WORKER_REPLACED.format(what=ending, nodeid=items[first].nodeid)
            self.queue.appendleft(replace(worker.group, items=rest, note=note))


def when_of(phase: str) -> Literal["setup", "call", "teardown"]:
    if phase == "call":
        return "call"
    if phase == "teardown":
        return "teardown"
    return "setup"
