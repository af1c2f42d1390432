"""The run's guard: a small process that ends the workers' sessions when the pytest process ends,
however it ends (SIGKILL included).

Workers die with the pytest process (``PR_SET_PDEATHSIG``), but what their tests started does
not: it would be adopted by PID 1 and live on. Each worker leads a session; the guard, forked from
the pytest process before any worker, is told each worker's pid over a pipe (``+pid``, ``-pid``
once it is reaped and its session ended) and reads until end-of-file, which comes when the pytest
process closes the pipe or dies. It then kills every process of the sessions it was told of, and
exits at once: a session is named by its leader's pid, which a new process could take only once
the dead worker was reaped, so the sweep comes first. A process that left its worker's session
(``setsid``) is ended by the pytest process while it lives (:mod:`.proctree`), not by the guard.
"""

from __future__ import annotations

import contextlib
import os
import signal

from . import proctree


class Guard:
    """The pytest process's end of the guard."""

    def __init__(self) -> None:
        rfd, self.fd = os.pipe()
        self.pid = proctree.fork()
        if self.pid == 0:  # pragma: no cover - the guard's own life, seen through its effects
            os.close(self.fd)
            _watch(rfd)
        os.close(rfd)

    def add(self, pid: int) -> None:
        self._say(f"+{pid}\n")

    def forget(self, pid: int) -> None:
        self._say(f"-{pid}\n")

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError):  # a guard that died: the run goes on without it
            os.write(self.fd, line.encode())

    def close(self) -> None:
        """End the guard: it sweeps what is left (nothing, after a clean run) and exits."""
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _watch(rfd: int) -> None:
    """The guard's life. Never returns."""
    try:
        # Out of the terminal's reach (^C and a closed terminal go to the pytest process, which
        # ends the run), and holding no descriptor of the pytest process but its own pipe.
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        os.closerange(3, rfd)
        os.closerange(rfd + 1, 1 << 16)
        sessions: set[int] = set()
        pending = b""
        while chunk := os.read(rfd, 4096):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                pid = int(line[1:])
                if line.startswith(b"+"):
                    sessions.add(pid)
                else:
                    sessions.discard(pid)
        end_sessions(sessions)
    finally:
        os._exit(0)


def end_sessions(sessions: set[int]) -> None:
    """Kill every process of ``sessions`` (a session is named by its leader's pid)."""
    if not sessions:
        return
    me = os.getpid()
    for _ in range(proctree.SWEEPS):
        found = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != me:
                info = proctree.stat(int(entry))
                if info is not None and info[2] in sessions:
                    found.add(int(entry))
        if not found:
            return
        proctree.kill(found)
