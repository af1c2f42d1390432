"""Where an engine's run happens under a scenario: on a new thread, in a forked child.

Scenarios compose these into their ``run`` and ``fix`` (:mod:`.base`)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..messages import STARTED_FROM
from ..wait_status import describe_status

T = TypeVar("T")


def run_on_thread(fn: Callable[[], T], name: str = "trtctx-exec") -> T:
    """Run ``fn`` on a new thread and return its result (or raise its exception) here."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    setattr(thread, STARTED_FROM, sys._getframe(1))  # the tracer names the caller's line
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


#: How long a child forked to run an engine may take before it is killed (a child of a process
#: with threads can deadlock on a lock another thread held at the fork).
FORK_TIMEOUT_S = 60.0


def run_in_fork(fn: Callable[[], T], timeout: float = FORK_TIMEOUT_S) -> T | ForkFailure:
    """Run ``fn`` in a child forked from this process and return what it returned (pickled back),
    as a program that forks its workers after initialising CUDA does. The child never returns
    into pytest: it reports and leaves with os._exit. Where it raises, dies or does not answer
    in ``timeout`` seconds, a :class:`ForkFailure` says so (the child is killed and reaped)."""
    import pickle
    import select
    import signal
    import warnings

    read, write = os.pipe()
    with warnings.catch_warnings():  # this fork is the scenario itself, not an accident
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: only fn, then out
        os.close(read)
        try:
            data = pickle.dumps(("value", fn()))
        except BaseException as exc:
            data = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
        with open(write, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(write)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with open(read, "rb", buffering=0) as pipe:
        while (left := deadline - time.monotonic()) > 0 and select.select([pipe], [], [], left)[0]:
            chunk = pipe.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    timed_out = time.monotonic() >= deadline
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _pid, status = os.waitpid(pid, 0)
    if timed_out:
        return ForkFailure(f"the forked child did not answer in {timeout:.0f} s and was killed")
    if not chunks:
        return ForkFailure(f"the forked child {describe_status(status)} without an answer")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        return ForkFailure(f"the forked child raised {value}")
    return value  # type: ignore[no-any-return]


@dataclass
class ForkFailure:
    """What :func:`run_in_fork` says when the child gave no result."""

    reason: str
