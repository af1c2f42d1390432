"""A child process's wait status in words, for every message that says how a process ended."""

from __future__ import annotations

import os
import signal


def describe_status(status: int | None) -> str:
    """A wait status in words: ``killed by signal 11 (SIGSEGV)``, ``exited with status 70``."""
    if status is None:
        return "its exit status is unknown"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by signal {sig} ({name})"
    return f"exited with status {os.WEXITSTATUS(status)}"
