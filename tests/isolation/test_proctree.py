"""proctree: what a worker's tests started, found in /proc. Real processes, no fakes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pytest_trtctx.isolation import guard, proctree

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="isolation reads Linux's /proc")


def test_a_zombie_is_not_a_process_to_end() -> None:
    """A child that exited and is not reaped yet holds nothing: stat names it None, so that a
    session sweep does not count it (it used to sweep /proc eight times for a dead worker)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while proctree.stat(child.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        with open(f"/proc/{child.pid}/stat", "rb") as fh:
            assert fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"  # a zombie, not reaped
        assert proctree.stat(child.pid) is None
    finally:
        child.wait()


def test_a_sweep_of_a_session_ends_its_processes_and_not_others() -> None:
    """end_sessions kills every live process of the named session, one that left its process
    group included, and nothing outside it; with only a zombie left it returns."""
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, time; "
         "subprocess.Popen(['sleep', '60'], process_group=0); time.sleep(60)"],
        start_new_session=True,
    )  # fmt: skip
    other = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.monotonic() + 10
        members: set[int] = set()
        while len(members) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
            members = {
                int(p) for p in os.listdir("/proc") if p.isdigit()
                if (proctree.stat(int(p)) or (0, 0, 0))[2] == leader.pid
            }  # fmt: skip
        assert len(members) == 2, members  # the leader and its sleeper in a group of its own
        started = time.monotonic()
        guard.end_sessions({leader.pid})
        assert time.monotonic() - started < 5
        assert leader.wait(timeout=10) == -9
        time.sleep(0.2)  # the sleeper, orphaned, is reaped by whoever adopted it
        assert all(proctree.stat(pid) is None for pid in members), members
        assert other.poll() is None  # not of that session: untouched
    finally:
        other.kill()
        other.wait()
        leader.kill()
        leader.wait()
