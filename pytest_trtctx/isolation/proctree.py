"""What a worker's tests started, found in ``/proc`` and ended.

A test may start processes that leave the worker's process group (``setsid``, ``setpgid``), so a
group kill does not reach them. A worker is a child subreaper (``PR_SET_CHILD_SUBREAPER``): while
it lives, an orphan of what its tests started is adopted by it, not by PID 1, so everything its
tests started is below it, where these functions find it by parent links. Linux only, as the rest
of isolation.
"""

from __future__ import annotations

import contextlib
import os
import signal

#: prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

#: How many times a tree is swept: a process may fork between a sweep's read and its kill; its
#: child is then adopted by the subreaper above and found by the next sweep.
SWEEPS = 8


def prctl(option: int, value: int) -> bool:
    """``prctl(option, value)``; False where the call failed."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(option, value, 0, 0, 0)) == 0


def fork() -> int:
    """``os.fork()`` without Python 3.12's warning about forking a multi-threaded process (torch's
    import leaves threads behind): the isolation's children (the guard, the collecting child,
    the workers) run none of the parent's threads and exec nothing, which is the case the
    warning allows; each of their forks goes through here, so that none prints it at the top of
    a user's run (the guard's did, on a GPU host)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def children(pid: int) -> set[int]:
    """The live children of ``pid`` (those of each of its threads)."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as fh:
                found.update(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` by parent links (not ``pid`` itself)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()) - found:
            found.add(child)
            todo.append(child)
    return found


def stat(pid: int) -> tuple[int, int, int] | None:
    """``(ppid, pgrp, session)`` of ``pid``; None when it is gone or a zombie (it holds nothing
    any more: it only waits for its parent to reap it, and no signal ends it sooner)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # pid (comm) state ppid pgrp session ...: comm may hold spaces and parentheses
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[1]), int(fields[2]), int(fields[3])


def kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def end_below(pid: int) -> None:
    """Kill every process below ``pid``, however it left ``pid``'s process group."""
    for _ in range(SWEEPS):
        found = descendants(pid)
        if not found:
            return
        kill(found)


def end_tree(pid: int) -> None:
    """Kill ``pid``, its process group and every process below it. ``pid`` is stopped first so
    that it starts nothing new meanwhile; its own children go before it, so that none is orphaned
    past the subreaper that would keep it findable."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGSTOP)
    end_below(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
