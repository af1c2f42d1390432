"""Forked isolation: fresh processes, crashes and hangs become failed reports, the run goes on."""

from __future__ import annotations

import pytest

from pytest_trtctx.names import MSG_CRASHED, MSG_CUDA_TOUCHED, MSG_CULPRIT_UNKNOWN, MSG_HUNG

from .conftest import cpu_orders, run_pytest

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


def test_isolated_processes_are_not_the_pytest_process(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import os
        PARENT = os.getpid()
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
    from pytest_trtctx.isolation import ORDER_START_ALLOWANCE

    assert ORDER_START_ALLOWANCE > 3
    pytester.makeconftest(
        """
        import time
        import pytest_trtctx.worker as worker

        _apply = worker.apply_order

        def slow_apply(config, order):
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
            from pytest_trtctx.probe import cuda_untouched
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
        import pytest_trtctx.forking as iso
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
