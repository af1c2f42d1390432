"""The scheduler's rules, with fake workers (as pytest-xdist's ``test_dsession.py`` tests its
scheduler with ``MockNode``): no fork, no pipe, no pytest run. What the real processes do is
tested through pytester in ``test_forking.py``."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_trtctx.isolation import channel
from pytest_trtctx.isolation.scheduler import ORDER_START_ALLOWANCE, Scheduler, Spare, Worker
from pytest_trtctx.isolation.worker import Group
from pytest_trtctx.messages import MSG_CRASHED, MSG_CUDA_TOUCHED, MSG_HUNG


@dataclass
class FakeItem:
    nodeid: str
    location: tuple[str, int, str] = ("test_x.py", 0, "test")
    keywords: dict[str, Any] = field(default_factory=dict)


def exited(code: int) -> int:
    """A wait status for a process that exited with ``code``."""
    return code << 8


def killed(sig: int) -> int:
    """A wait status for a process killed by ``sig``."""
    return sig


# A worker's script: what it sends, in order. A dict is one message; ("exit", status) closes
# the pipe and ends the process; ("wait", s) sends nothing for s seconds; "hang" sends nothing
# until the worker is killed.
Step = dict[str, Any] | tuple[str, float] | str
Behaviour = Callable[[str | None, list[int]], list[Step]]


def passes(order: str | None, indices: list[int]) -> list[Step]:
    """A worker whose every test passes."""
    steps: list[Step] = []
    for i in range(len(indices)):
        steps += [
            {"event": "start", "index": i},
            {"event": "phase", "index": i, "phase": "call"},
            {"event": "report", "index": i, "data": {"outcome": "passed", "when": "call"}},
            {"event": "done", "index": i},
        ]
    return [*steps, ("exit", exited(0))]


@dataclass
class FakeProc:
    pid: int
    steps: list[Step]
    status: int | None = None
    tests: int = 0
    done: int = 0
    not_before: float = 0.0
    dumped: bool = False


class FakeProcesses:
    """:class:`~pytest_trtctx.isolation.scheduler.Processes` that scripts its workers."""

    def __init__(self, behave: Behaviour = passes, *, refuse: bool = False) -> None:
        self.behave = behave
        self.refuse = refuse
        self.next = 100
        self.procs: dict[int, FakeProc] = {}  # by report fd
        self.forked: list[int] = []
        self.assigned: list[tuple[int, str | None, list[int]]] = []
        self.retired: list[int] = []
        self.killed: list[int] = []
        self.tests_ended: list[int] = []
        self.sessions_ended: list[int] = []
        self.released: list[int] = []
        self.closed: list[int] = []
        self.running_max = 0
        self.all_started_after: list[int] = []  # groups assigned at each all_started

    def spare(self) -> Spare | None:
        if self.refuse:
            return None
        self.next += 1
        self.forked.append(self.next)
        return Spare(pid=self.next, ctrl=-self.next, fd=self.next, dump=f"dump-{self.next}")

    def refusal(self) -> str:
        return MSG_CUDA_TOUCHED.format(why="cuInit was already called (fake)", culprit="a test")

    def assign(self, spare: Spare, message: bytes) -> None:
        msg = json.loads(message)
        self.assigned.append((spare.pid, msg["order"], msg["items"]))
        steps = list(self.behave(msg["order"], msg["items"]))
        self.procs[spare.fd] = FakeProc(spare.pid, steps, tests=len(msg["items"]))
        # Busy: tests not all done (a worker past its last test is exiting: its slot is free).
        busy = sum(p.status is None and p.done < p.tests for p in self.procs.values())
        self.running_max = max(self.running_max, busy)

    def retire(self, spare: Spare) -> None:
        self.retired.append(spare.pid)

    def all_started(self) -> None:
        self.all_started_after.append(len(self.assigned))

    def _has_output(self, proc: FakeProc) -> bool:
        if proc.status is not None or not proc.steps:
            return proc.status is not None and proc.pid not in self.closed_pids
        step = proc.steps[0]
        if isinstance(step, tuple) and step[0] == "wait":
            if not proc.not_before:
                proc.not_before = time.monotonic() + step[1]
            if time.monotonic() < proc.not_before:
                return False
            proc.steps.pop(0)
            return self._has_output(proc)
        return step != "hang"

    @property
    def closed_pids(self) -> set[int]:
        return {self.procs[fd].pid for fd in self.closed if fd in self.procs}

    def ready(self, timeout: float | None) -> list[int]:
        found = [
            fd for fd, p in self.procs.items() if fd not in self.closed and self._has_output(p)
        ]
        if not found:
            time.sleep(min(timeout if timeout is not None else 0.01, 0.01))
        return found

    def read(self, fd: int) -> bytes | None:
        proc = self.procs[fd]
        if proc.status is not None:
            return b""
        step = proc.steps.pop(0)
        if step == "closed":  # the pipe closed; the process lives on (or is still dying)
            return b""
        if isinstance(step, dict):
            proc.done += step["event"] == "done"
            return channel.encode(step)
        assert isinstance(step, tuple) and step[0] == "exit"
        proc.status = int(step[1])
        return b""

    def close(self, fd: int) -> None:
        self.closed.append(fd)

    def _proc(self, pid: int) -> FakeProc:
        return next(p for p in self.procs.values() if p.pid == pid)

    def dump_stacks(self, worker: Worker) -> None:
        self._proc(worker.pid).dumped = True

    def kill(self, pid: int) -> None:
        self.killed.append(pid)
        proc = self._proc(pid)
        if proc.status is None:
            proc.status = killed(signal.SIGKILL)

    def end_test(self, pid: int) -> None:
        self.tests_ended.append(pid)

    def end_session(self, pid: int) -> None:
        assert self._proc(pid).status is not None, "ended before it was killed"
        self.sessions_ended.append(pid)

    def release(self, worker: Worker) -> None:
        self.released.append(worker.pid)

    def wait(self, pid: int, *, block: bool) -> int | None:
        return self._proc(pid).status

    def stacks(self, worker: Worker) -> str:
        return (
            "Thread 0x1 (most recent call first):\n  File x.py in sleepy"
            if self._proc(worker.pid).dumped
            else ""
        )

    def close_all(self) -> None:
        pass


class FakeSink:
    """:class:`~pytest_trtctx.isolation.scheduler.Sink` that records."""

    def __init__(self, stop_after_failures: int = 0) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.messages: dict[str, str] = {}
        self.durations: dict[str, float] = {}
        self.stop_after = stop_after_failures

    def start(self, item: FakeItem) -> None:
        self.events.append(("start", item.nodeid))

    def report(self, item: FakeItem, data: dict[str, Any]) -> None:
        self.events.append(("report", item.nodeid, data["outcome"]))

    def fail(
        self, item: FakeItem, when: str, message: str, signature: str, stacks: str, duration: float
    ) -> None:
        self.events.append(("fail", item.nodeid, when, signature))
        self.durations[item.nodeid] = duration
        self.messages[item.nodeid] = message + ("\n" + stacks if stacks else "")

    def skip(self, item: FakeItem, message: str) -> None:
        self.events.append(("skip", item.nodeid))
        self.messages[item.nodeid] = message

    def warning(self, item: FakeItem | None, data: dict[str, Any]) -> None:
        self.events.append(("warning", item.nodeid if item else None, data["warning"]["message"]))

    def warn(self, item: FakeItem, message: str) -> None:
        self.events.append(("warn", item.nodeid, message))

    def finish(self, item: FakeItem) -> None:
        self.events.append(("finish", item.nodeid))

    def stop_requested(self) -> bool:
        failed = sum(e[0] == "fail" or (e[0] == "report" and e[2] == "failed") for e in self.events)
        return bool(self.stop_after) and failed >= self.stop_after

    def outcomes(self) -> dict[str, str]:
        out = {}
        for e in self.events:
            if e[0] == "report":
                out[e[1]] = e[2]
            elif e[0] == "fail":
                out[e[1]] = e[3]
            elif e[0] == "skip":
                out[e[1]] = "skipped"
        return out


def schedule(
    groups: list[list[str]],
    processes: FakeProcesses,
    *,
    workers: int = 2,
    order: str | None = "trt-first",
    timeout: float = 30.0,
    sink: FakeSink | None = None,
) -> tuple[FakeSink, list[FakeItem]]:
    """Run groups of test names through a scheduler with fake workers."""
    items = {name: FakeItem(name) for group in groups for name in group}
    sink = sink or FakeSink()
    queue = [Group(order, [items[name] for name in group]) for group in groups]
    scheduler = Scheduler(
        list(items.values()),
        queue,
        workers,
        processes,
        sink,
        lambda item: (timeout, "option --trtctx-timeout"),
    )
    scheduler.run()
    return sink, list(items.values())


def test_every_group_runs_in_its_own_worker_with_its_item_indices() -> None:
    procs = FakeProcesses()
    sink, _items = schedule([["a"], ["b", "c"], ["d"]], procs, workers=2)
    assert sink.outcomes() == dict.fromkeys("abcd", "passed")
    assert [(order, idx) for _pid, order, idx in procs.assigned] == [
        ("trt-first", [0]),
        ("trt-first", [1, 2]),
        ("trt-first", [3]),
    ]
    assert len({pid for pid, _o, _i in procs.assigned}) == 3
    # pytest sees each test start, report and finish, in that order.
    for name in "abcd":
        seen = [e[0] for e in sink.events if e[1] == name]
        assert seen == ["start", "report", "finish"], (name, seen)


def test_no_more_workers_at_once_than_asked() -> None:
    procs = FakeProcesses(lambda o, i: [("wait", 0.02), *passes(o, i)])
    schedule([[f"t{n}"] for n in range(8)], procs, workers=3)
    assert procs.running_max == 3
    assert len(procs.assigned) == 8


def test_a_spare_is_forked_ahead_and_retired_when_unused() -> None:
    procs = FakeProcesses()
    schedule([["a"], ["b"]], procs, workers=1)
    # The second worker was forked while the first ran; nothing was left over to retire.
    assert len(procs.forked) == 2 and procs.retired == []
    procs = FakeProcesses()
    sink = FakeSink(stop_after_failures=1)
    fails = FakeProcesses(
        lambda o, i: [
            {"event": "start", "index": 0},
            {"event": "report", "index": 0, "data": {"outcome": "failed", "when": "call"}},
            {"event": "done", "index": 0},
            ("exit", exited(0)),
        ]
    )
    schedule([["a"], ["b"], ["c"]], fails, workers=1, sink=sink)
    # -x: the spare forked for "b" never got work and was retired; "b" and "c" never started.
    assert [e for e in sink.events if e[0] == "start"] == [("start", "a")]
    assert fails.retired == [fails.forked[1]]


def test_the_processes_hear_when_every_group_has_its_worker() -> None:
    """all_started comes once, when the last group is assigned (the end of the run may be
    prepared then), not while a group still waits for a slot."""
    procs = FakeProcesses(lambda o, i: [("wait", 0.02), *passes(o, i)])
    schedule([["a"], ["b"], ["c"], ["d"], ["e"]], procs, workers=2)
    assert procs.all_started_after == [5]


def test_a_crash_fails_the_test_in_its_phase_and_the_rest_go_to_a_new_worker() -> None:
    def crashes_on_b(order: str | None, indices: list[int]) -> list[Step]:
        if len(indices) == 3:  # the first worker: a passes, b crashes in its call
            return [
                *passes(order, indices[:1])[:-1],
                {"event": "start", "index": 1},
                {"event": "phase", "index": 1, "phase": "call"},
                ("exit", killed(signal.SIGSEGV)),
            ]
        return passes(order, indices)

    procs = FakeProcesses(crashes_on_b)
    sink, _ = schedule([["a", "b", "c"]], procs, workers=1)
    assert sink.outcomes() == {
        "a": "passed",
        "b": "worker: crashed in call (SIGSEGV)",
        "c": "passed",
    }
    assert ("fail", "b", "call", "worker: crashed in call (SIGSEGV)") in sink.events
    first, second = procs.assigned
    assert second[2] == [2] and second[0] != first[0]  # c alone, in a fresh worker
    assert sink.messages["b"] == MSG_CRASHED.format(
        pid=first[0], nodeid="b", phase="call", how="killed by signal 11 (SIGSEGV)"
    )


def test_a_worker_whose_pipe_closed_before_it_was_reaped_has_its_session_ended() -> None:
    """Its pipe closed mid-test and it is not reapable yet (dying of itself, or alive with the
    pipe closed): it is killed, then its session is ended before the reap (what its test started
    may have been orphaned out of its tree already); a worker reaped at once is not swept."""

    def closes_in_b(order: str | None, indices: list[int]) -> list[Step]:
        if len(indices) == 2:
            return [{"event": "start", "index": 0}, "closed"]
        return passes(order, indices)

    procs = FakeProcesses(closes_in_b)
    sink, _ = schedule([["a", "b"]], procs, workers=1)
    first, _ = procs.assigned
    assert procs.sessions_ended == [first[0]] and first[0] in procs.killed
    assert sink.outcomes() == {"a": "worker: crashed in setup (SIGKILL)", "b": "passed"}
    crashes = FakeProcesses(lambda o, i: [{"event": "start", "index": 0}, ("exit", 139)])
    schedule([["a"]], crashes, workers=1)
    assert crashes.sessions_ended == []  # reaped at once: Forker.wait swept it itself


def test_a_worker_that_dies_before_its_first_test_fails_that_test_at_setup() -> None:
    def dies_once(order: str | None, indices: list[int]) -> list[Step]:
        if len(indices) == 2:
            return [("exit", exited(70))]
        return passes(order, indices)

    procs = FakeProcesses(dies_once)
    sink, _ = schedule([["a", "b"]], procs, workers=1)
    assert ("fail", "a", "setup", "worker: died") in sink.events
    assert sink.events.index(("start", "a")) < sink.events.index(
        ("fail", "a", "setup", "worker: died")
    )
    assert "died before its first test: exited with status 70" in sink.messages["a"]
    assert sink.outcomes()["b"] == "passed"


def test_a_hang_is_dumped_killed_and_reported_with_its_stacks() -> None:
    def hangs_in_a(order: str | None, indices: list[int]) -> list[Step]:
        if len(indices) == 2:
            return [
                {"event": "start", "index": 0},
                {"event": "phase", "index": 0, "phase": "call"},
                "hang",
            ]
        return passes(order, indices)

    procs = FakeProcesses(hangs_in_a)
    start = time.monotonic()
    sink, _ = schedule([["a", "b"]], procs, workers=1, order=None, timeout=0.2)
    assert time.monotonic() - start < 5
    hung_pid = procs.assigned[0][0]
    assert procs._proc(hung_pid).dumped and hung_pid in procs.killed
    assert ("fail", "a", "call", "worker: hung in call") in sink.events
    assert sink.messages["a"].startswith(
        MSG_HUNG.format(
            pid=hung_pid, nodeid="a", timeout=0.2, phase="call", source="option --trtctx-timeout"
        )
    )
    assert "most recent call first" in sink.messages["a"]
    assert sink.durations["a"] >= 0.2  # the time it hung, not 0
    assert sink.outcomes()["b"] == "passed"


def test_applying_the_order_gets_its_allowance_before_the_test_timeout_applies() -> None:
    """A slow order start (a CUDA context queued behind others) is not a hang; the same delay
    with no order to apply is."""
    assert ORDER_START_ALLOWANCE > 1

    def slow_start(order: str | None, indices: list[int]) -> list[Step]:
        return [("wait", 0.5), *passes(order, indices)]

    sink, _ = schedule([["a"]], FakeProcesses(slow_start), order="driver-first", timeout=0.1)
    assert sink.outcomes() == {"a": "passed"}
    sink, _ = schedule([["a"]], FakeProcesses(slow_start), order=None, timeout=0.1)
    assert sink.outcomes() == {"a": "worker: died"}
    assert "made no progress for 0.1 s in phase 'start'" in sink.messages["a"]


def test_a_refused_fork_skips_every_test_of_the_group_and_the_run_ends() -> None:
    procs = FakeProcesses(refuse=True)
    sink, _ = schedule([["a", "b"], ["c"]], procs, workers=2)
    assert sink.outcomes() == dict.fromkeys("abc", "skipped")
    assert all(sink.messages[n] == procs.refusal() for n in "abc")
    assert procs.forked == [] and procs.assigned == []


def test_an_error_in_the_loop_kills_the_running_workers() -> None:
    class Interrupting(FakeSink):
        def report(self, item: FakeItem, data: dict[str, Any]) -> None:
            raise KeyboardInterrupt

    procs = FakeProcesses(lambda o, i: [*passes(o, i)[:3], "hang"])
    with pytest.raises(KeyboardInterrupt):
        schedule([["a"], ["b"]], procs, workers=2, sink=Interrupting())
    assert sorted(procs.killed) == sorted(pid for pid, _o, _i in procs.assigned)


def test_every_worker_is_ended_with_its_group_and_released() -> None:
    """When a worker's last test is done its whole process group is ended (what the test left
    running dies with it); between two tests of one worker, what the first started is ended."""
    procs = FakeProcesses()
    schedule([["a", "b", "c"], ["d"]], procs, workers=1)
    first, second = (pid for pid, _o, _i in procs.assigned)
    assert procs.tests_ended == [first, first]  # after a and after b; c was its last
    assert sorted(procs.killed) == sorted([first, second])
    assert sorted(procs.released) == sorted([first, second])


def test_a_test_raising_keyboardinterrupt_stops_the_run() -> None:
    procs = FakeProcesses(
        lambda o, i: [{"event": "start", "index": 0}, {"event": "interrupt", "index": 0}, "hang"]
    )
    with pytest.raises(KeyboardInterrupt):
        schedule([["a"], ["b"]], procs, workers=1)
    assert procs.killed == [procs.assigned[0][0]] and len(procs.assigned) == 1
    assert procs.sessions_ended == procs.killed  # its session swept too, after the kill


def test_a_worker_that_closed_its_pipe_but_lives_is_killed_not_waited_on() -> None:
    """A test that closes its inherited descriptors and sleeps: the pipe reads end-of-file while
    the process lives. The parent must not block in waitpid: it kills the group and goes on."""

    class Lingers(FakeProcesses):
        def read(self, fd: int) -> bytes | None:
            proc = self.procs[fd]
            if proc.steps and proc.steps[0] == ("closed", 0):
                proc.steps.pop(0)
                return b""  # end-of-file, the process still running (status None)
            return super().read(fd)

    procs = Lingers(
        lambda o, i: (
            [{"event": "start", "index": 0}, ("closed", 0)] if len(i) == 2 else passes(o, i)
        )
    )
    start = time.monotonic()
    sink, _ = schedule([["a", "b"]], procs, workers=1, timeout=30)
    assert time.monotonic() - start < 5
    assert sink.outcomes()["a"] == "worker: crashed in setup (SIGKILL)"
    assert sink.outcomes()["b"] == "passed"


def test_a_stop_ends_the_other_workers_and_reports_nothing_after_it() -> None:
    """-x: the failing test's own messages are taken up to its end; what follows in the same
    worker (a next test already started) and a test another worker is running are not reported,
    and both workers are ended."""

    def fails_then_goes_on(order: str | None, indices: list[int]) -> list[Step]:
        if indices == [0, 1]:  # the worker whose first test fails, then starts its second
            return [
                {"event": "start", "index": 0},
                {"event": "report", "index": 0, "data": {"outcome": "failed", "when": "call"}},
                {"event": "done", "index": 0},
                {"event": "start", "index": 1},
                "hang",
            ]
        return [("wait", 0.2), {"event": "start", "index": 0}, "hang"]  # the other worker

    procs = FakeProcesses(fails_then_goes_on)
    sink, _ = schedule([["a", "b"], ["c"]], procs, workers=2, sink=FakeSink(stop_after_failures=1))
    assert sink.events == [("start", "a"), ("report", "a", "failed"), ("finish", "a")]
    assert sorted(procs.killed) == sorted(pid for pid, _o, _i in procs.assigned)
    assert sorted(procs.sessions_ended) == sorted(procs.killed)  # each swept after its kill
