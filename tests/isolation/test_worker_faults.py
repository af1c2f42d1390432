"""A hostile test against the worker's pipe and process handling (docs/reliability.md): foreign
bytes on the report pipe, huge output, processes that leave the worker's session, a fork that
returns into the worker, properties JSON cannot hold, a killed pytest process. Each runs on a
machine without a GPU (CPU orders, as test_forking.py), as a user would meet it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_trtctx.messages import MSG_FOREIGN_BYTES

from ..conftest import cpu_orders, run_pytest
from .test_forking import _dead, _dies, _wait_for

FOREIGN = """
import fcntl, os

def write_only_pipes():
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("pipe:"):
                continue
            if fcntl.fcntl(int(name), fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                yield int(name)
        except OSError:
            continue

def test_before(trtctx_order): pass

def test_writes_to_inherited_fds(trtctx_order):
    # What a C library does with a descriptor it inherited: a line of its own, then half a
    # line that runs into the worker's next message.
    pipes = list(write_only_pipes())
    assert pipes
    for fd in pipes:
        os.write(fd, b"not json at all\\n{\\"half\\": ")

def test_after(trtctx_order): pass
"""


@pytest.mark.parametrize("isolate", ["test", "order"])
def test_foreign_bytes_on_the_report_pipe_are_named_and_the_run_goes_on(
    pytester: pytest.Pytester, isolate: str
) -> None:
    pytester.makepyfile(FOREIGN)
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", f"--trtctx-isolate={isolate}"
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=3, warnings=1)
    said = MSG_FOREIGN_BYTES.split("{sample")[0].format(
        count="*", pid="*", nodeid="*::test_writes_to_inherited_fds*"
    )
    result.stdout.fnmatch_lines([f"*{said}b'not json at all*"])
    assert "INTERNALERROR" not in result.stdout.str()


def test_tens_of_megabytes_of_output_are_no_hang(pytester: pytest.Pytester) -> None:
    """The captured output crosses the pipe in the reports after the teardown phase began: the
    parent reads it in linear time, and bytes arriving count as progress."""
    pytester.makepyfile(
        """
        def test_prints(trtctx_order):
            print("x" * (20 << 20))
        def test_after(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=trt-first",
        "--trtctx-isolate=order",
        "--trtctx-timeout=2",
    )
    result.assert_outcomes(passed=2)


def test_a_failing_tests_large_output_is_shown_whole(pytester: pytest.Pytester) -> None:
    """Output large enough to cross as an attachment, not ASCII, reaches the failure report."""
    pytester.makepyfile(
        """
        def test_fails(trtctx_order):
            print("\u00e9" * 200_000 + "END-OF-OUTPUT")
            assert False
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-isolate=order"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*- Captured stdout call -*", "\u00e9\u00e9*END-OF-OUTPUT"])


SESSION_LEAVER = """
import os, time

def test_leaves_a_session(trtctx_order):
    # A daemon's double fork: the grandchild leads a session of its own, its parent exits, and
    # it keeps the worker's report pipe open (it inherited it).
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open("grandchild.tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.rename("grandchild.tmp", "grandchild.pid")  # whole when it appears
            time.sleep(120)
        os._exit(0)
    while not os.path.exists("grandchild.pid"):
        time.sleep(0.01)

def test_next(trtctx_order): pass
"""


@pytest.mark.parametrize("isolate", ["test", "order"])
def test_a_process_that_leaves_the_session_neither_stalls_the_run_nor_outlives_it(
    pytester: pytest.Pytester, isolate: str
) -> None:
    pytester.makepyfile(SESSION_LEAVER)
    start = time.monotonic()
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=trt-first",
        f"--trtctx-isolate={isolate}",
        "--trtctx-timeout=0",
    )
    assert time.monotonic() - start < 60
    result.assert_outcomes(passed=2)
    grandchild = int(_wait_for(pytester.path / "grandchild.pid"))
    assert _dead(grandchild)


@pytest.mark.parametrize("isolate", ["test", "order"])
def test_a_fork_that_returns_into_the_worker_never_reports(
    pytester: pytest.Pytester, isolate: str
) -> None:
    pytester.makepyfile(
        """
        import os
        def test_forks(trtctx_order):
            os.fork()  # both processes return from the test
        def test_after(trtctx_order):
            open(f"after.{os.getpid()}", "w").close()
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", f"--trtctx-isolate={isolate}"
    )
    result.assert_outcomes(passed=2)
    assert len(list(pytester.path.glob("after.*"))) == 1


def test_properties_json_cannot_hold_are_sent_as_their_repr(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_runtest_logreport(report):
            if report.when == "call":
                with open("props.txt", "a") as fh:
                    fh.write(repr(dict(report.user_properties)) + "\\n")
        """
    )
    pytester.makepyfile(
        """
        def test_records(trtctx_order, record_property):
            cyclic = []
            cyclic.append(cyclic)
            record_property("tuple_keys", {(1, 2): "a"})
            record_property("cyclic", cyclic)
            record_property("huge", 10**5000)
            record_property("plain", 7)
        def test_after(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-isolate=order"
    )
    result.assert_outcomes(passed=2)
    assert "status 70" not in result.stdout.str()
    recorded = (pytester.path / "props.txt").read_text().splitlines()[0]
    assert "'tuple_keys': {'(1, 2)': 'a'}" in recorded
    assert "'cyclic': ['<cycle: list contains itself>']" in recorded
    assert "'huge': '<int that cannot be shown: " in recorded
    assert "'plain': 7" in recorded


STARTS_PROCESSES = """
import os, subprocess, time

def test_starts(trtctx_order):
    same_group = subprocess.Popen(["sleep", "1000"])
    own_group = subprocess.Popen(["sleep", "1000"], process_group=0)
    open("sleepers.pid", "w").write(f"{same_group.pid} {own_group.pid}")
    open("worker.pid", "w").write(str(os.getpid()))
    time.sleep(120)
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Popen(process_group=) is Python 3.11+")
def test_a_killed_pytest_process_takes_what_its_tests_started_with_it(
    pytester: pytest.Pytester,
) -> None:
    """SIGKILL cannot be handled: the workers die with the pytest process (PR_SET_PDEATHSIG) and
    the run's guard ends their sessions, so what the tests started does not live on under PID 1,
    whether it stayed in the worker's process group or made one of its own."""
    pytester.makepyfile(STARTS_PROCESSES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "pytest_trtctx.plugin", *cpu_orders(pytester),
         "--trtctx-order=trt-first", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        worker = int(_wait_for(pytester.path / "worker.pid"))
        sleepers = [int(p) for p in _wait_for(pytester.path / "sleepers.pid").split()]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert _dies(worker)
    assert all(_dies(pid) for pid in sleepers), [Path(f"/proc/{p}/stat").exists() for p in sleepers]


@pytest.mark.parametrize("stop", [["-x"], ["--maxfail=2"]])
def test_maxfail_stops_a_worker_that_runs_many_tests(
    pytester: pytest.Pytester, stop: list[str]
) -> None:
    """-x and --maxfail stop the run where plain pytest stops it, inside one order's worker too:
    the tests after the last failure allowed never run and are not reported."""
    pytester.makepyfile(
        """
        import os, pytest
        @pytest.mark.parametrize("n", range(20))
        def test_n(n):
            open(f"ran.{n}.{os.getpid()}", "w").close()
            assert n not in (1, 3)
        """
    )
    plain = pytester.runpytest_subprocess(*stop, "-p", "no:cacheprovider")
    for ran in pytester.path.glob("ran.*"):
        ran.unlink()
    result = run_pytest(pytester, "--trtctx-isolate=order", *stop)
    limit = {"-x": 1, "--maxfail=2": 2}[stop[0]]
    expected = {"failed": limit, "passed": limit}
    assert plain.parseoutcomes() == expected  # what plain pytest does, for reference
    result.assert_outcomes(**expected)
    failures = expected["failed"]
    result.stdout.fnmatch_lines([f"*stopping after {failures} failures*"])
    ran = list(pytester.path.glob("ran.*"))
    assert len(ran) == sum(expected.values())
    assert len({p.name.split(".")[2] for p in ran}) == 1  # one worker ran them


def test_a_warning_from_a_module_only_a_test_imports_is_shown_without_importing_it(
    pytester: pytest.Pytester,
) -> None:
    """A helper imported only inside a test, whose import would load NVML (here: leaves a file
    naming the process that imported it), warns: the warning reaches pytest's summary under its
    category's name, and the pytest process never imports the helper (it would become
    CUDA-touched, and every later test would be skipped)."""
    pytester.makepyfile(
        nvml_helper="""
        import os, warnings
        open(f"imported.{os.getpid()}", "w").close()

        class NvmlWarning(UserWarning):
            pass

        def warn():
            warnings.warn("careful with the driver", NvmlWarning)
        """
    )
    pytester.makeconftest(
        """
        import os, sys

        def pytest_unconfigure(config):
            with open("parent.txt", "w") as fh:
                fh.write(f"{os.getpid()} {'nvml_helper' in sys.modules}")
        """
    )
    pytester.makepyfile(
        """
        def test_warns(trtctx_order):
            import nvml_helper
            nvml_helper.warn()
        def test_later(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-isolate=test"
    )
    result.assert_outcomes(passed=2, warnings=1)
    result.stdout.fnmatch_lines(["*NvmlWarning: careful with the driver"])
    parent, imported_there = (pytester.path / "parent.txt").read_text().split()
    assert imported_there == "False"
    assert not (pytester.path / f"imported.{parent}").exists()


def test_sigterm_to_the_xdist_controller_ends_the_run_as_without_xdist(
    pytester: pytest.Pytester,
) -> None:
    """Under -n (each xdist worker forks each test), SIGTERM to the controller ends the run as it
    ends one without xdist: the results so far and the summary, exit 2, nothing left running."""
    pytester.makepyfile(
        """
        import os, time
        def test_passes(trtctx_order): pass
        def test_sleeps(trtctx_order):
            open(f"sleeper.{os.getpid()}", "w").close()
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "pytest_trtctx.plugin", *cpu_orders(pytester),
         "--trtctx-order=trt-first", "-p", "no:cacheprovider", "-p", "xdist", "-n", "2", "-rA"],
        cwd=pytester.path,
        # xdist's workers import the CPU orders' module from here
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(pytester.path), *sys.path])},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(pytester.path.glob("sleeper.*")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            time.sleep(0.05)
        sleeper = int(next(pytester.path.glob("sleeper.*")).name.split(".")[1])
        time.sleep(1)  # the other test's report reaches the controller
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = out.decode(errors="replace")
    assert proc.returncode == 2, text
    assert "SIGTERM received" in text
    assert "PASSED test_sigterm_to_the_xdist_controller" in text, text  # the result so far
    assert "= trtctx summary =" in text, text
    assert _dies(sleeper)


def test_what_a_crashed_worker_started_is_ended(pytester: pytest.Pytester) -> None:
    """A worker that dies of itself cannot end what its test started: the pytest process ends
    the worker's session when it reaps it, a process that made a group of its own included."""
    pytester.makepyfile(
        """
        import os, signal, subprocess
        def test_crashes(trtctx_order):
            sleeper = subprocess.Popen(["sleep", "1000"], process_group=0)
            open("sleeper.pid", "w").write(str(sleeper.pid))
            os.kill(os.getpid(), signal.SIGKILL)
        def test_after(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-isolate=order"
    )
    result.assert_outcomes(failed=1, passed=1)
    assert _dies(int(_wait_for(pytester.path / "sleeper.pid")), 5)
