"""The worker side of isolation: a forked child that applies its order and runs its tests.

Like pytest-xdist's ``remote.py``, this module does not depend on the rest of the plugin's
machinery: it imports the order recipes, the device probe, the settings and nothing above them.
The child reports to the parent over a pipe in JSON lines, as plain dicts: ``start`` when an item
starts, ``phase`` when one of its phases starts, ``report`` with each serialized TestReport,
``done`` when the item is finished. Everything else (what a death or a hang means, what runs next)
is the parent's business (:mod:`.isolation`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import pytest
from _pytest.runner import runtestprotocol
from _pytest.warnings import catch_warnings_for_item

from ..checks.outcomes import NOTE_PROPERTY
from ..cuda import contexts, probe
from ..errors import OrderError
from ..messages import MSG_CUDA_TOUCHED, MSG_ORDER_NOT_APPLIED
from ..scenarios.base import State
from ..scenarios.process import Process, fresh_process, process_of
from ..settings.config import settings_of
from ..trace import recorder as tracer
from . import channel, proctree, reruns
from .proxy import find_items, not_found_report
from .warning_wire import recorded_warning

#: Imported in the pytest process before the first fork, so that each worker starts with them
#: loaded instead of importing torch itself (a fork costs milliseconds, importing torch seconds:
#: docs/isolation.md). Importing them does not initialise CUDA; probe.cuda_untouched() checks
#: that before every fork.
PRELOAD = ("torch", "cuda.bindings.driver", "cuda.bindings.nvrtc")

#: The exit status of a worker whose own machinery failed (not its tests): EX_SOFTWARE.
EXIT_INTERNAL = 70


def preload() -> list[str]:
    """Import :data:`PRELOAD` where installed; return what was imported."""
    loaded = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # not installed here: the worker that needs it will say so
            continue
        loaded.append(name)
    return loaded


def apply_order(
    config: pytest.Config, order: str, culprit: str = "", *, trace: bool = False
) -> State:
    """Apply ``order``'s recipe in this process (a fresh worker, or the session at start).

    The recipe must be the first CUDA work of the process: where CUDA was initialised already
    (``culprit`` says by what), the order is not applied and its tests skip with the reason.
    With ``trace``, the context tracer starts first, so that the contexts the recipe makes are
    named by it; where the tracer cannot start, each traced test says why.
    """
    settings = settings_of(config)
    info = probe.machine()
    clean, why = probe.cuda_untouched(nvml_ok=True)
    blocked = "" if clean else MSG_CUDA_TOUCHED.format(why=why, culprit=culprit or "unknown")
    if trace and clean and info.has_gpu:  # after the proof: subscribing may load the driver
        tracer.start()
    with tracer.labelled(f"the {order} order's recipe"):
        return process_of(config).apply(
            settings.registry[order],
            settings.device.value,
            len(info.devices),
            "" if info.has_gpu else info.why_no_gpu,
            names=", ".join(d.name for d in info.devices) or "none",
            blocked=blocked,
            for_speed=settings.fast_contexts.value,
        )


def state_for(process: Process, order: str) -> State:
    """The state of ``order`` in this process; OrderError when it applied none or another."""
    state = process.state
    if state is None or state.order != order:
        applied = state.order if state is not None else "no order"
        raise OrderError(MSG_ORDER_NOT_APPLIED.format(order=order, applied=applied))
    return state


def enter(process: Process, order: str) -> tuple[State, bool]:
    """A test under ``order`` starts: its state, and whether the test meets it fresh (the first
    test of the process to run under it: after that, torch and the engine share a context)."""
    state = state_for(process, order)
    fresh = state.uses == 0 or state.every_test_fresh
    state.uses += 1
    return state, fresh


@dataclass
class Group:
    """Items that one worker runs, in collection order, after applying ``order`` (if any)."""

    order: str | None
    items: list[pytest.Item]
    #: Why these items run in this worker and not the one they were meant for (a worker retired
    #: after a sticky CUDA error); the reports carry it.
    note: str | None = None
    #: Some item is traced: the context tracer starts before the order's recipe.
    trace: bool = False
    #: Which attempt at its one test this group is (0: the first; a rerun's group has one item).
    attempt: int = 0


def group_message(
    order: str | None,
    indices: list[int],
    note: str | None = None,
    trace: bool = False,
    attempt: int = 0,
) -> bytes:
    """What the parent writes to a spare's control pipe: its order, item indices, note, whether
    to trace, and which attempt this is."""
    message = {"order": order, "items": indices, "note": note, "trace": trace, "attempt": attempt}
    return json.dumps(message).encode() + b"\n"


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

    def pytest_warning_recorded(
        self,
        warning_message: warnings.WarningMessage,
        when: str,
        nodeid: str,
        location: tuple[str, int, str] | None,
    ) -> None:
        # pytest_warning_recorded is a historic hook: registering this plugin in the child
        # replays every warning the parent recorded before the fork. Only the child's own,
        # recorded while its tests run, go up; the replayed ones would multiply with each worker.
        if self.index < 0:
            return
        sent = recorded_warning(warning_message, when, nodeid, location)
        self.send({"event": "warning", "index": self.index, **sent})


def _sticky(reports: list[pytest.TestReport]) -> str | None:
    """What left this process's CUDA context unusable during the test just run, if anything:
    the current context's own sticky error, else one named in the test's failure."""
    found = contexts.sticky_error()
    if found is not None:
        return found
    for report in reports:
        if report.failed:
            words = contexts.sticky_in(str(report.longrepr))
            if words is not None:
                return words
    return None


def _stops_the_run(session: pytest.Session, reports: list[pytest.TestReport]) -> bool:
    """Whether ``-x`` / ``--maxfail`` stops the run after this test: its failures counted as
    pytest's session counts them, on top of those the parent had counted when this worker was
    forked (the parent counts every worker's; it stops the run, this only stops this worker
    from starting a test that pytest would not run)."""
    maxfail = int(session.config.getvalue("maxfail") or 0)
    session.testsfailed += sum(r.failed and not hasattr(r, "wasxfail") for r in reports)
    return bool(maxfail) and session.testsfailed >= maxfail


def _die_with(parent: int) -> None:
    """End this worker when the pytest process ends, however it ends (even by SIGKILL), and keep
    what its tests start findable: it leads a session of its own (everything its tests start is
    in it unless it calls ``setsid``; the run's guard ends the session if the pytest process is
    killed, :mod:`.guard`), and it adopts their orphans (a child subreaper), so that the parent
    finds them below it (:mod:`.proctree`) even when they leave the session."""
    os.setsid()
    proctree.prctl(proctree.PR_SET_CHILD_SUBREAPER, 1)
    proctree.prctl(proctree.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request was made
        os._exit(EXIT_INTERNAL)


#: The report pipe is moved to a descriptor at or above this one (or as high as the limit allows):
#: a library that writes to a low descriptor it believes its own then misses it. The reader does
#: not depend on it (foreign bytes are framed out, :mod:`.channel`); it only makes them rarer.
PRIVATE_FD = 900


def _private(fd: int) -> int:
    """``fd`` moved to a high descriptor number (close-on-exec), the low one closed."""
    import fcntl
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    floor = min(PRIVATE_FD, soft - 16) if soft > 32 else 3
    try:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, max(3, floor))
    except OSError:  # no free descriptor up there: keep the one we have
        return fd
    os.close(fd)
    return moved


def _sender(wfd: int) -> Any:
    """The worker's ``send``: one frame per message on the report pipe, from this process only.

    A test may fork a child that does not exit and returns into this worker's loop (as
    ``os.fork()`` without ``os._exit`` does): that child must never report, or its test would be
    counted twice and the next tests run twice. So ``send`` checks the pid, and a child that
    reaches it leaves at once."""
    fd = _private(wfd)
    owner = os.getpid()

    def send(message: dict[str, Any]) -> None:
        if os.getpid() != owner:
            os._exit(0)
        for part in channel.frame(message):
            view = memoryview(part)
            while view:
                view = view[os.write(fd, view) :]

    return send


def run_child(session: pytest.Session, wfd: int, dump: int, ctrl: int, parent: int) -> None:
    """Body of a forked worker. Never returns.

    Every worker is forked as a spare: it does everything that does not depend on its tests
    first (and takes those page faults) while it waits for its group on ``ctrl``. It leads a
    session (and so a process group) of its own, so that the parent can end whatever its tests
    start, and it dies with the parent.
    """
    code = 0
    try:
        _die_with(parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and kills us
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        dump_file = os.fdopen(dump, "w")
        faulthandler.enable(file=dump_file, all_threads=True)
        faulthandler.register(signal.SIGUSR1, file=dump_file, all_threads=True)
        send = _sender(wfd)
        sections = channel.Sections()  # a test's output crosses once (see Sections)

        fresh_process(session.config)
        torch = sys.modules.get("torch")
        if torch is not None:  # CPU references in many workers at once: don't oversubscribe
            share = max(
                1, (os.cpu_count() or 1) // max(1, settings_of(session.config).workers.value)
            )
            torch.set_num_threads(share)
        progress = _Progress(send)
        session.config.pluginmanager.register(progress, "trtctx-progress")
        hook = session.config.hook
        group = _read_group(session, ctrl)
        if group is None:
            os._exit(0)  # retired without work
        if group.order is not None:
            apply_order(session.config, group.order, trace=group.trace)
        # After the recipe: the test modules are imported here, first, as the order means.
        found = find_items(session, group.items)
        if group.order is not None and settings_of(session.config).prebuild.value:
            from .prebuild import prebuild_here

            prebuild_here(session.config, [i for i in found if not isinstance(i, str)], group.order)
        for index, wanted in enumerate(group.items):
            progress.index = index
            last = index + 1 == len(group.items)
            send({"event": "start", "index": index})
            item = found[index]
            if isinstance(item, str):  # the module collected differently here: say so, go on
                data = hook.pytest_report_to_serializable(
                    config=session.config, report=not_found_report(wanted, item)
                )
                send({"event": "report", "index": index, "data": data})
                if last:
                    save_coverage()
                send({"event": "done", "index": index})
                continue
            nextitem = next((i for i in found[index + 1 :] if not isinstance(i, str)), None)
            if group.note:
                item.user_properties.append((NOTE_PROPERTY, group.note))
            # As pytest's own protocol does: the test's warnings are recorded (and so sent up).
            try:
                with catch_warnings_for_item(session.config, item.ihook, "runtest", item):
                    reports = runtestprotocol(item, log=False, nextitem=nextitem)
            except KeyboardInterrupt:  # the test raised it: stop the run, as pytest would
                send({"event": "interrupt", "index": index})
                break
            rerun = reruns.judge(item, reports, group.attempt)
            for report in reports:
                data = hook.pytest_report_to_serializable(config=session.config, report=report)
                # Under the node id the pytest process knows (a worker's collection may name
                # the same test otherwise: proxy.find_items).
                data["nodeid"] = wanted.nodeid
                send({"event": "report", "index": index, "data": sections.compact(index, data)})
            sections.forget(index)
            if rerun:  # the parent runs it again in a fresh worker
                send({"event": "rerun", "index": index})
            if _stops_the_run(session, reports):
                save_coverage()
                send({"event": "done", "index": index})
                break
            sticky = None if last else _sticky(reports)
            if sticky is not None:
                # The context is unusable: every later test here would fail with it. Finish
                # this one, take no more; the parent gives the rest to a fresh worker.
                send({"event": "retire", "index": index, "reason": sticky})
                save_coverage()
                send({"event": "done", "index": index})
                break
            if last:  # the parent ends the worker once it reads the last "done"
                save_coverage()
            send({"event": "done", "index": index})
    except BaseException:  # anything here is the plugin's own failure: say it, then exit
        import traceback

        traceback.print_exc()
        code = EXIT_INTERNAL
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        # A worker may exit before the parent gets to end it: what its tests started and it
        # adopted (one that left the session too) would then be orphaned past its reach.
        with contextlib.suppress(Exception):
            proctree.end_below(os.getpid())
        os._exit(code)


def save_coverage() -> None:
    """Write what coverage.py measured in this worker, as a data file of its own.

    A worker leaves with ``os._exit``, so coverage's own save at exit never runs there. Where
    coverage names its data files per process (pytest-cov does; ``coverage run --parallel-mode``
    too), this worker's file is combined with the others' at the end of the run, as pytest-cov
    combines its xdist workers'. Where it does not, the file name is the pytest process's own, and
    saving here would erase the pytest process's data: nothing is saved (docs/isolation.md).
    """
    module = sys.modules.get("coverage")
    cov = getattr(getattr(module, "Coverage", None), "current", lambda: None)()
    if cov is None:
        return
    per_process = getattr(cov, "_data_suffix_specified", None) is True or cov.config.parallel
    if not per_process:
        return
    try:
        cov.stop()
        cov.save()
    except Exception as exc:  # a worker's results matter more than its coverage: say, go on
        print(
            f"pytest-trtctx: coverage data of worker {os.getpid()} not saved: {exc!r}",
            file=sys.stderr,
        )


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
    items = [session.items[i] for i in message["items"]]
    return Group(
        message["order"],
        items,
        message.get("note"),
        bool(message.get("trace")),
        int(message.get("attempt") or 0),
    )
