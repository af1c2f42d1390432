"""Each init order's recipe, checked against the context truth table (docs/orders.md).

GPU tests run through pytester in fresh subprocesses: this process must never initialise CUDA.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_trtctx.cuda.probe import machine
from pytest_trtctx.messages import (
    MSG_CUDA_TOUCHED,
    MSG_CULPRIT_CALL,
    MSG_CULPRIT_STARTUP,
    MSG_NO_DRIVER,
    MSG_TOO_FEW_DEVICES,
)
from pytest_trtctx.scenarios import HAZARDS, ORDERS, TWO_DEVICES
from pytest_trtctx.scenarios.runners import ForkFailure, run_in_fork

from ..conftest import gpu_skip_reason, requires_gpu, run_pytest

STATE_SUITE = """
import torch
from pytest_trtctx.cuda import driver

def test_state(trtctx, trtctx_order):
    info = driver.describe_current(0)
    torch_init = torch.cuda.is_initialized()
    print(f"STATE {trtctx_order} primary={info.is_primary} torch={torch_init} "
          f"created={trtctx.state.engine_context is not None}")
    x = torch.ones(1, device="cuda")  # torch's first (or next) allocation
    after = driver.describe_current(0)
    print(f"AFTER {trtctx_order} primary={after.is_primary}")
"""

EXPECTED_STATE = {
    "torch-first": ("primary=True torch=True created=False", "primary=True"),
    "trt-first": ("primary=True torch=False created=False", "primary=True"),
    # The truth table's bug: cuCtxCreate first, then torch's first allocation switches contexts.
    "driver-first": ("primary=False torch=False created=True", "primary=True"),
    "thread-hop": ("primary=False torch=False created=True", "primary=True"),
}


@requires_gpu
def test_each_recipe_leaves_the_contexts_the_truth_table_says(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STATE_SUITE)
    orders = ",".join(EXPECTED_STATE)
    result = run_pytest(pytester, f"--trtctx-order={orders}", "-s", "--trtctx-timeout=60")
    result.assert_outcomes(passed=len(EXPECTED_STATE))
    for order, (before, after) in EXPECTED_STATE.items():
        result.stdout.fnmatch_lines([f"*STATE {order} {before}*"])
        result.stdout.fnmatch_lines([f"*AFTER {order} {after}*"])


DIAGNOSIS_SUITE = """
import pytest
from pytest_trtctx.engines.matrix import ConvSpec

SPEC = ConvSpec("k3_f32", 1, 4, 8, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, "float32")

def test_unfixed(trtctx):
    trtctx.check_conv(SPEC)

def test_fixed(trtctx_fix_context):
    trtctx_fix_context.check_conv(SPEC)
"""


@requires_gpu
@pytest.mark.parametrize("order", ["driver-first", "thread-hop"])
def test_failure_message_diagnoses_and_the_fix_fixes(pytester: pytest.Pytester, order: str) -> None:
    pytester.makepyfile(DIAGNOSIS_SUITE)
    result = run_pytest(pytester, f"--trtctx-order={order}", "--trtctx-timeout=60")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "E*trtctx check failed: backend: CUDA_ERROR_INVALID_HANDLE",
            "E*[[]FAIL[]] backend: cuLaunchKernel returned CUDA_ERROR_INVALID_HANDLE",
            # N*K*P*Q = 1*8*9*11 outputs, none written
            "E*[[]FAIL[]] sentinel: k3_f32: 792 of 792 elements never written",
            f"E*order: {order} (cuCtxCreate on device 0*",
            "E*engine built in: a context of its own on device 0 (not the primary)*",
            "E*ran in: the primary context of device 0*",
            "E*likely cause: *",
            "*- trtctx contexts -*",
            f"order: {order} (cuCtxCreate on device 0*",
            "current context on thread MainThread at the start of the call: #1, a context of its "
            "own on device 0 (not the device's primary)",
            "at its end: #2, the primary context of device 0",
        ],
        consecutive=False,
    )
    assert "def run(self" not in result.stdout.str()  # the runtime's frames are hidden


@requires_gpu
def test_a_parent_that_initialised_cuda_is_never_forked(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import torch\ntorch.cuda.init()\n")
    pytester.makepyfile("def test_x(trtctx_order): pass")
    result = run_pytest(pytester, "--trtctx-order=torch-first", "-rs")
    result.assert_outcomes(skipped=1)
    call = MSG_CULPRIT_CALL.format(path="conftest.py", line=2, code="torch.cuda.init()")
    why = MSG_CUDA_TOUCHED.format(why="*", culprit=f"{MSG_CULPRIT_STARTUP}; {call}")
    result.stdout.fnmatch_lines(["SKIPPED *" + why])


@requires_gpu
def test_is_available_at_import_time_runs_after_the_recipe(pytester: pytest.Pytester) -> None:
    """skipif(not torch.cuda.is_available()) at a test module's import initialises CUDA (or NVML)
    where the module is imported: in the worker, after the order's recipe, never in the pytest
    process (docs/isolation.md). The test runs under its order."""
    pytester.makepyfile(
        """
        import pytest, torch
        @pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
        def test_x(trtctx):
            pass
        """
    )
    result = run_pytest(pytester, "--trtctx-order=torch-first", "-rs")
    result.assert_outcomes(passed=1)


@requires_gpu
def test_cuda_available_helper_keeps_the_parent_clean(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, torch
        import pytest_trtctx
        @pytest.mark.skipif(not pytest_trtctx.cuda_available(), reason="no GPU")
        def test_x(trtctx):
            assert torch.cuda.is_initialized()
        """
    )
    result = run_pytest(pytester, "--trtctx-order=torch-first")
    result.assert_outcomes(passed=1)


def test_without_a_gpu_order_tests_skip_with_the_reason(pytester: pytest.Pytester) -> None:
    why = gpu_skip_reason()
    if why is None:
        pytest.skip("this machine has a GPU: the no-driver path cannot be seen here")
    pytester.makepyfile("def test_x(trtctx): pass")
    result = run_pytest(pytester, f"--trtctx-order={','.join(ORDERS)}", "-rs")
    result.assert_outcomes(skipped=len(ORDERS))
    result.stdout.fnmatch_lines(
        [f"SKIPPED [[]{len(ORDERS)}[]] *{MSG_NO_DRIVER.format(why=machine().why_no_gpu)}"]
    )


@pytest.mark.parametrize("order", TWO_DEVICES)
def test_the_two_device_scenarios_skip_with_the_device_count(
    pytester: pytest.Pytester, order: str
) -> None:
    info = machine()
    if len(info.devices) != 1:
        pytest.skip(f"needs exactly one GPU to see the skip; this machine has {len(info.devices)}")
    pytester.makepyfile("def test_x(trtctx): pass")
    result = run_pytest(pytester, f"--trtctx-order={order}", "-rs")
    result.assert_outcomes(skipped=1)
    said = MSG_TOO_FEW_DEVICES.format(order=order, needs=2, count=1, names=info.devices[0].name)
    result.stdout.fnmatch_lines([f"*{said}"])


HAZARD_SUITE = """
import pytest
from pytest_trtctx.engines.matrix import ConvSpec
from pytest_trtctx.messages import (
    CONTEXT_GONE, CONTEXT_MISMATCH, CUDA_LOST_IN_FORK, LAZY_LOADING_STALL,
)

SPEC = ConvSpec("k3_f32", 1, 4, 8, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, "float32")

@pytest.mark.trtctx_known_failure(
    ["foreign-stream", "graph-capture", "pushed-over-torch"], CONTEXT_MISMATCH
)
@pytest.mark.trtctx_known_failure("context-destroyed", CONTEXT_GONE)
@pytest.mark.trtctx_known_failure("fork-after-init", CUDA_LOST_IN_FORK)
@pytest.mark.trtctx_known_failure("lazy-stall", LAZY_LOADING_STALL)
@pytest.mark.trtctx_known_failure("device-hop", CONTEXT_MISMATCH)
def test_unfixed(trtctx):
    trtctx.check_conv(SPEC)

def test_fixed(trtctx_fix_context):
    trtctx_fix_context.check_conv(SPEC)

def test_a_second_clean_engine(trtctx_fix_context):
    trtctx_fix_context.check_conv(SPEC)  # after the failed run, in the same process
"""


@requires_gpu
@pytest.mark.parametrize("isolate", ["test", "order"])
def test_each_hazard_fails_as_the_field_saw_and_its_fix_passes(
    pytester: pytest.Pytester, isolate: str
) -> None:
    """Each hazard's declared outcome, as the GPU shows it (docs/orders.md), and a clean engine
    after the failed one in the same process."""
    pytester.makepyfile(HAZARD_SUITE)
    result = run_pytest(
        pytester, "--trtctx-order=hazards", f"--trtctx-isolate={isolate}", "--trtctx-timeout=60",
        "-rxX",
    )  # fmt: skip
    skipped = [h for h in HAZARDS if h in TWO_DEVICES and len(machine().devices) < 2]
    runs = len(HAZARDS) - len(skipped)  # a two-device hazard's 3 tests skip on one GPU
    result.assert_outcomes(passed=2 * runs, xfailed=runs, skipped=3 * len(skipped))


def test_a_forked_run_returns_what_the_child_returned() -> None:
    assert run_in_fork(lambda: ("from", os.getpid())) != ("from", os.getpid())
    assert run_in_fork(lambda: ("from", os.getpid()))[0] == "from"  # type: ignore[index]


@pytest.mark.parametrize(
    ("fn", "said"),
    [
        (lambda: 1 / 0, "the forked child raised ZeroDivisionError: division by zero"),
        (lambda: os._exit(3), "the forked child exited with status 3 without an answer"),
        (lambda: time.sleep(30), "the forked child did not answer in 1 s and was killed"),
    ],
    ids=["raises", "dies", "hangs"],
)
def test_a_forked_run_that_gives_no_result_says_why_and_leaves_no_child(fn: Any, said: str) -> None:
    before = _children()
    failed = run_in_fork(fn, timeout=1.0)
    assert isinstance(failed, ForkFailure) and failed.reason == said
    assert _children() == before  # reaped, killed where it hung


def _children() -> set[str]:
    """This process's live children (Linux: /proc/PID/task/*/children)."""
    found: set[str] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found.update((task / "children").read_text().split())
    return found
