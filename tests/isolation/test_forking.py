"""Forked isolation: fresh processes, crashes and hangs become failed reports, the run goes on."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_trtctx.messages import MSG_CRASHED, MSG_CUDA_TOUCHED, MSG_CULPRIT_UNKNOWN, MSG_HUNG

from ..conftest import cpu_orders, run_pytest

PIDS = """
import os, pytest

@pytest.fixture(scope="session", autouse=True)
def record_pid():
    with open("pids.txt", "a") as fh:
        fh.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]} {os.getpid()}\\n")
"""


def _pids(pytester: pytest.Pytester) -> list[str]:
    return (pytester.path / "pids.txt").read_text().split()[1::2]


def test_isolate_test_gives_every_test_its_own_process(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PIDS)
    pytester.makepyfile(
        """
        import os
        def test_a(trtctx_order): pass
        def test_b(trtctx_order): pass
        def test_c(): pass
        """
    )
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,trt-first",
        "--trtctx-isolate=test",
        "--trtctx-workers=2",
    )
    result.assert_outcomes(passed=5)
    pids = _pids(pytester)
    assert len(pids) == 5 and len(set(pids)) == 5, pids


def test_isolate_order_gives_every_order_one_process(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PIDS)
    pytester.makepyfile(
        """
        def test_a(trtctx_order): pass
        def test_b(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,trt-first,driver-first",
        "--trtctx-isolate=order",
    )
    result.assert_outcomes(passed=6)
    assert len(set(_pids(pytester))) == 3


@pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="Python 3.12 is the first to warn about fork() in a multi-threaded process",
)
def test_no_fork_of_the_isolation_warns_in_a_multi_threaded_pytest_process(
    pytester: pytest.Pytester,
) -> None:
    """A pytest process with threads (torch's import leaves some) forks the guard, the collecting
    child and the workers without Python's DeprecationWarning about it: each child runs none of
    its threads (proctree.fork). It used to head every run on a GPU host, from the guard."""
    pytester.makeconftest(
        """
        import threading, time
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        """
    )
    pytester.makepyfile("def test_a(trtctx_order): pass")
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", "--trtctx-isolate=order",
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    assert "multi-threaded" not in result.stdout.str() + result.stderr.str()


def test_isolated_processes_are_not_the_pytest_process(pytester: pytest.Pytester) -> None:
    # The conftest is imported by the pytest process (the test module is not: test_collection.py).
    pytester.makeconftest("import os\nPARENT = os.getpid()\n")
    pytester.makepyfile(
        """
        import os
        from conftest import PARENT
        def test_child(trtctx_order):
            assert os.getpid() != PARENT
            assert os.getppid() == PARENT
        """
    )
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=trt-first")
    result.assert_outcomes(passed=1)


CRASH = """
import os, signal, pytest


@pytest.fixture
def aborts_in_setup():
    os.abort()

def test_before(trtctx_order): pass
def test_segfault_in_call(trtctx_order):
    os.kill(os.getpid(), signal.SIGSEGV)
def test_crash_in_setup(trtctx_order, aborts_in_setup): pass
def test_exit_in_call(trtctx_order):
    os._exit(3)
def test_after(trtctx_order): pass
"""


@pytest.mark.parametrize("isolate", ["test", "order"])
def test_crash_becomes_a_failed_report_and_the_run_goes_on(
    pytester: pytest.Pytester, isolate: str
) -> None:
    pytester.makepyfile(CRASH)
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first",
        f"--trtctx-isolate={isolate}",
        "-p",
        "no:faulthandler",
    )
    result.assert_outcomes(passed=2, failed=2, errors=1)
    name = "test_crash_becomes_a_failed_report_and_the_run_goes_on.py"
    result.stdout.fnmatch_lines(
        [
            "*"
            + MSG_CRASHED.format(
                pid="*",
                nodeid=f"{name}::test_segfault_in_call[[]torch-first[]]",
                phase="call",
                how="killed by signal 11 (SIGSEGV)",
            ),
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*"
            + MSG_CRASHED.format(
                pid="*",
                nodeid=f"{name}::test_crash_in_setup[[]torch-first[]]",
                phase="setup",
                how="killed by signal 6 (SIGABRT)",
            ),
        ]
    )
    result.stdout.fnmatch_lines(["*test_exit_in_call*'call': exited with status 3*"])
    result.stdout.fnmatch_lines(["*worker: crashed in call (SIGSEGV)*"])


def test_hang_is_killed_with_its_stack_and_the_run_goes_on(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time, pytest

        def sleepy_helper():
            time.sleep(60)

        @pytest.mark.trtctx_timeout(1.5)
        def test_hangs(trtctx_order):
            sleepy_helper()

        def test_after(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first",
        "--trtctx-timeout=120",
        "--trtctx-isolate=order",
    )
    result.assert_outcomes(passed=1, failed=1)
    name = "test_hang_is_killed_with_its_stack_and_the_run_goes_on.py"
    result.stdout.fnmatch_lines(
        [
            "*"
            + MSG_HUNG.format(
                pid="*",
                nodeid=f"{name}::test_hangs[[]torch-first[]]",
                timeout=1.5,
                phase="call",
                source=f"marker trtctx_timeout on {name}::test_hangs",
            ),
        ]
    )
    result.stdout.fnmatch_lines(["*line * in sleepy_helper*"])
    assert result.duration < 60


def test_hang_timeout_from_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import time
        def test_hangs(trtctx_order):
            time.sleep(60)
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-timeout=1"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*made no progress for 1 s in phase 'call' (*option --trtctx-timeout)*"]
    )


def test_a_slow_order_start_is_not_a_hang(pytester: pytest.Pytester) -> None:
    """Applying the order (a fresh CUDA context: seconds when many processes create one at once)
    gets ORDER_START_ALLOWANCE; the test's own timeout applies from its setup on. The slowness is
    simulated by delaying the worker's apply_order (no GPU needed): what is under test is the
    scheduler's timer, not CUDA."""
    from pytest_trtctx.isolation.scheduler import ORDER_START_ALLOWANCE

    assert ORDER_START_ALLOWANCE > 3
    pytester.makeconftest(
        """
        import time
        import pytest_trtctx.isolation.worker as worker

        _apply = worker.apply_order

        def slow_apply(config, order, **kwargs):
            time.sleep(3)
            return _apply(config, order)

        worker.apply_order = slow_apply
        """
    )
    pytester.makepyfile(
        """
        import time
        def test_fast(trtctx_order): pass
        def test_hangs(trtctx_order):
            time.sleep(60)
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-timeout=1"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_hangs[[]trt-first[]] made no progress for 1 s in phase 'call'*"]
    )


def test_maxfail_stops_scheduling(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.parametrize("n", range(20))
        def test_fails(trtctx_order, n):
            assert False
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", "--trtctx-workers=1", "-x"
    )
    result.assert_outcomes(failed=1)


def test_output_and_reports_survive_the_trip(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        def test_prints(trtctx_order, record_property):
            record_property("answer", 42)
            print("hello from the worker")
            assert 1 == 2
        def test_skips(trtctx_order):
            pytest.skip("not today")
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", "-rs", "--junitxml=out.xml"
    )
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*hello from the worker*", "*assert 1 == 2*"], consecutive=False)
    result.stdout.fnmatch_lines(["SKIPPED * not today"])
    assert 'name="answer" value="42"' in (pytester.path / "out.xml").read_text()


def test_the_forking_parent_is_still_cuda_clean_after_a_run(pytester: pytest.Pytester) -> None:
    """The proof the scheduler relies on, where it is relied on: the pytest process that forks
    the workers. After a whole isolated run (header, collection, workers forked and reaped), it
    must still be provably untouched, or the next fork (a worker replacing a crashed one) would
    inherit CUDA state. On a CPU machine the proof is that libcuda was never loaded; on the GPU
    machine, that cuInit was never called and no device file is open."""
    pytester.makeconftest(
        """
        def pytest_unconfigure(config):
            from pytest_trtctx.cuda.probe import cuda_untouched
            ok, how = cuda_untouched()
            print(f"PARENT-CLEAN {ok}: {how}")
        """
    )
    pytester.makepyfile(
        """
        def test_a(trtctx_order): pass
        def test_b(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,trt-first",
        "--trtctx-isolate=test",
        "-s",
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["PARENT-CLEAN True: *"])


def test_a_refused_fork_skips_each_test_and_the_run_ends(pytester: pytest.Pytester) -> None:
    """When the parent is not provably clean, no worker is forked: every test is skipped with the
    reason (no test may run under an order that was not met), and the run ends instead of
    waiting on workers that were never started."""
    pytester.makeconftest(
        """
        import pytest_trtctx.isolation.forking as iso
        # Stands in for a parent that initialised CUDA (there is no driver on a CPU machine);
        # the refusal path after it is the plugin's own, unchanged.
        iso.cuda_untouched = lambda: (False, "cuInit was already called in this process (test)")
        """
    )
    pytester.makepyfile(
        """
        def test_a(trtctx_order): pass
        def test_b(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(skipped=2)
    why = MSG_CUDA_TOUCHED.format(
        why="cuInit was already called in this process (test)", culprit=MSG_CULPRIT_UNKNOWN
    )
    result.stdout.fnmatch_lines([f"torch-first: not applied here, its tests skipped: {why}"])
    result = run_pytest(pytester, "--trtctx-order=torch-first", "-rs")
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] *:1: " + why, "SKIPPED [[]1[]] *:2: " + why])


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for a reaper (a container's first process may reap nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _dies(pid: int, seconds: float = 10) -> bool:
    """Whether ``pid`` is gone (or a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not _dead(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _dead(pid)


#: A test that records its worker's pid and sleeps: a worker to signal the run around.
SLEEPER = """
import os, time
def test_sleeps(trtctx_order):
    open("worker.pid", "w").write(str(os.getpid()))
    time.sleep(120)
"""


def _wait_for(path: Path, seconds: float = 60) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_what_a_test_leaves_running_is_ended_with_it(pytester: pytest.Pytester) -> None:
    """A test that forks a child which keeps the report pipe open (as a multiprocessing daemon
    does) neither stalls the run nor outlives it."""
    pytester.makepyfile(
        """
        import os, time
        def test_leaves_a_child(trtctx_order):
            pid = os.fork()
            if pid == 0:
                time.sleep(120)
                os._exit(0)
            open("child.pid", "w").write(str(pid))
        def test_next(trtctx_order): pass
        """
    )
    start = time.monotonic()
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-isolate=order"
    )
    result.assert_outcomes(passed=2)
    assert time.monotonic() - start < 60
    child = int((pytester.path / "child.pid").read_text())
    assert _dead(child)


def test_a_worker_that_closes_its_pipe_and_sleeps_does_not_block_the_run(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os, time
        def test_closes(trtctx_order):
            os.closerange(3, 1024)
            time.sleep(120)
        def test_after(trtctx_order): pass
        """
    )
    start = time.monotonic()
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-isolate=order"
    )
    assert time.monotonic() - start < 60
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*worker process (pid *) died while running *test_closes*"])


def _pytest_process(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[bytes]:
    """A pytest run under trt-first in the background, to be signalled."""
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "pytest_trtctx.plugin", *args,
         "--trtctx-order=trt-first", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_ends_the_run_and_its_workers(pytester: pytest.Pytester, sig: int) -> None:
    pytester.makepyfile(SLEEPER)
    proc = _pytest_process(pytester, *cpu_orders(pytester))
    try:
        worker = int(_wait_for(pytester.path / "worker.pid"))
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2, out
    assert f"{signal.Signals(sig).name} received".encode() in out
    assert _dies(worker)


def test_a_dead_pytest_process_takes_its_workers_with_it(pytester: pytest.Pytester) -> None:
    """SIGKILL cannot be handled: the workers die with their parent (PR_SET_PDEATHSIG)."""
    pytester.makepyfile(SLEEPER)
    proc = _pytest_process(pytester, *cpu_orders(pytester))
    try:
        worker = int(_wait_for(pytester.path / "worker.pid"))
        proc.kill()
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert _dies(worker)


def test_keyboardinterrupt_in_a_test_stops_the_run_as_pytest_does(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_interrupts(trtctx_order):
            raise KeyboardInterrupt
        def test_never(trtctx_order):
            open("ran", "w").close()
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-workers=1"
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    assert "status 70" not in result.stdout.str()
    assert not (pytester.path / "ran").exists()


def test_properties_of_any_type_cross_as_pytest_writes_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pathlib
        def test_records(trtctx_order, record_property):
            record_property("where", pathlib.Path("a/b"))
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--junitxml=out.xml"
    )
    result.assert_outcomes(passed=1)
    assert 'name="where" value="a/b"' in (pytester.path / "out.xml").read_text()
