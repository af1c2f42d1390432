"""Around each test (pytest_trtctx.around_test): the order gate, the context watch, the record.

On a machine without a GPU nothing can run under an order: every test under one is skipped with
the reason, whatever it asks for. The machinery after the gate runs on CPU-only tests with the
recipe stood in for (``cpu_orders``); the context diagnosis itself runs on the GPU."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_trtctx.messages import (
    MSG_NO_ORDER_SELECTED,
    MSG_NO_ORDER_SELECTED_MARKED,
)
from pytest_trtctx.scenarios import ORDERS

from .conftest import cpu_orders, gpu_skip_reason, requires_gpu, run_pytest

#: The README's shapes: an own engine with trtctx_outputs, a CPU-only test asking for an order,
#: a plain test.
USER_SUITE = """
import pytest

@pytest.mark.trtctx_nonzero
def test_my_engine(trtctx_order, trtctx_outputs):
    import torch
    out = trtctx_outputs.empty((1, 8), dtype=torch.float16, device="cuda")
    out.fill_(1.0)
    trtctx_outputs.add("logits", out)

def test_cpu_only(trtctx_order):
    pass

def test_plain():
    pass
"""


@pytest.mark.skipif(gpu_skip_reason() is None, reason="this machine has a GPU")
def test_without_a_gpu_nothing_passes_or_fails_under_an_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_SUITE)
    result = run_pytest(pytester, "--trtctx-order=all", "-rs", "--trtctx-report=r.json")
    n = len(ORDERS)
    result.assert_outcomes(passed=1, skipped=2 * n)  # test_plain is under none of five orders
    why = gpu_skip_reason()
    assert why is not None
    result.stdout.fnmatch_lines([f"SKIPPED [[]*[]] *{why}"])
    result.stdout.fnmatch_lines(
        [f"{', '.join(ORDERS)}: not applied here, its tests skipped: {why}"]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    under = [t for t in report["tests"] if t["order"] is not None]
    assert len(under) == 2 * n
    assert {(t["outcome"], t["order_applied"], t["fresh"]) for t in under} == {
        ("skipped", False, True)
    }


def test_with_no_order_selected_a_test_asking_for_one_says_how(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USER_SUITE)
    result = run_pytest(pytester, "-rs", "-v")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*test_cpu_only[[]no-order[]] SKIPPED*"])
    result.stdout.fnmatch_lines(["*" + MSG_NO_ORDER_SELECTED.format(orders=", ".join(ORDERS))])
    assert (
        "torch-first" not in result.stdout.str().split("short test summary")[0].split("rootdir")[1]
    )


@pytest.mark.parametrize("marked", ['"torch-first", "trt-first"', '"torch-first, trt-first"'])
def test_with_no_order_selected_a_marked_test_names_its_orders(
    pytester: pytest.Pytester, marked: str
) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.trtctx_orders({marked})
        def test_marked(trtctx_order):
            pass
        """
    )
    result = run_pytest(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*" + MSG_NO_ORDER_SELECTED_MARKED.format(marked="torch-first,trt-first")]
    )


def test_the_report_says_whether_each_test_met_its_order_fresh(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_a(trtctx_order): pass
        def test_b(trtctx_order): pass
        def test_c(): pass
        """
    )
    run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=trt-first",
        "--trtctx-isolate=order",
        "--trtctx-report=r.json",
    )
    tests = {
        t["nodeid"].split("::")[1]: t
        for t in json.loads((pytester.path / "r.json").read_text())["tests"]
    }
    assert (tests["test_a[trt-first]"]["order_applied"], tests["test_a[trt-first]"]["fresh"]) == (
        True,
        True,
    )
    assert (tests["test_b[trt-first]"]["order_applied"], tests["test_b[trt-first]"]["fresh"]) == (
        True,
        False,
    )
    # One order selected: a plain test meets it too, in the same process.
    assert tests["test_c"]["order"] == "trt-first" and tests["test_c"]["fresh"] is False


def test_a_markers_verdict_shows_no_plugin_source(pytester: pytest.Pytester) -> None:
    pytest.importorskip("torch", reason="torch is not installed")
    pytester.makepyfile(
        """
        import pytest, torch

        @pytest.mark.trtctx_nonzero
        def test_zeros(trtctx_outputs):
            trtctx_outputs.add("y", torch.zeros(3))
        """
    )
    result = run_pytest(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "test_a_markers_verdict_shows_no_plugin_source.py:3: "
            "trtctx_nonzero: nonzero: output all zeros",
            "  [[]FAIL[]] nonzero: y: all 3 elements are zero",
        ]
    )
    text = result.stdout.str()
    assert "pytest_pyfunc_call" not in text and "run_checked" not in text


def test_warnings_raised_in_workers_reach_the_summary(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import warnings

        def test_warns(trtctx_order):
            warnings.warn("this API is old", DeprecationWarning)
        """
    )
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=trt-first")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        [
            "*warnings summary*",
            "*test_warns[[]trt-first[]]*",
            "*DeprecationWarning: this API is old",
        ]
    )


def test_the_plugins_own_cache_warning_reaches_the_summary(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """A corrupt cached cubin is recompiled with a warning, raised inside a worker (NVRTC runs
    without a GPU)."""
    pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC (cuda-bindings[all]) is not installed")
    pytester.makepyfile(
        f"""
        import pathlib, pytest
        from pytest_trtctx.backends import kernels

        def test_compiles(trtctx_order):
            first = kernels.compile_conv("sm_80", cache_dir=pathlib.Path({str(tmp_path)!r}))
            first.path.write_bytes(b"not an ELF")
            kernels.clear_memo()
            kernels.compile_conv("sm_80", cache_dir=pathlib.Path({str(tmp_path)!r}))
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*RuntimeWarning: pytest-trtctx: cached cubin * is corrupt*"])


STICKY_SUITE = """
import os

def test_a(trtctx_order, record_property):
    record_property("pid", os.getpid())

def test_poisons(trtctx_order, record_property):
    record_property("pid", os.getpid())
    raise RuntimeError("CUDA error: an illegal memory access was encountered")

def test_c(trtctx_order, record_property):
    record_property("pid", os.getpid())

def test_d(trtctx_order, record_property):
    record_property("pid", os.getpid())
"""


def test_a_worker_with_a_sticky_cuda_error_is_retired(pytester: pytest.Pytester) -> None:
    """After a test fails with a sticky CUDA error its worker takes no more tests: the rest of
    its order's tests run in a fresh worker, and their reports say why."""
    pytester.makepyfile(STICKY_SUITE)
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=trt-first",
        "--trtctx-isolate=order",
        "--trtctx-report=r.json",
        "--junitxml=out.xml",
    )
    result.assert_outcomes(passed=3, failed=1)
    tests = {
        t["nodeid"].split("::")[1]: t
        for t in json.loads((pytester.path / "r.json").read_text())["tests"]
    }
    pids = dict(
        re.findall(
            r'name="(test_\w+)\[trt-first\]".*?name="pid" value="(\d+)"',
            (pytester.path / "out.xml").read_text(),
            flags=re.S,
        )
    )
    assert pids["test_a"] == pids["test_poisons"] != pids["test_c"] == pids["test_d"], pids
    note = (
        "ran in a fresh worker: the one before was retired after a sticky CUDA error "
        "(illegal memory access) in test_a_worker_with_a_sticky_cuda_error_is_retired.py::"
        "test_poisons[trt-first]"
    )
    assert note in tests["test_c[trt-first]"]["messages"]
    assert (
        tests["test_c[trt-first]"]["fresh"] is True and tests["test_d[trt-first]"]["fresh"] is False
    )


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "test_own_engine.py"


@requires_gpu
def test_a_users_engine_fails_under_driver_first_naming_the_context_switch(
    pytester: pytest.Pytester,
) -> None:
    """The README's own-engine example on the GPU: under driver-first its output is never written
    and the failure says which context was current when; pushed, it passes; torch-first passes."""
    pytester.makepyfile(test_own_engine=EXAMPLE.read_text())
    result = run_pytest(pytester, "--trtctx-order=torch-first,driver-first")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_my_engine[[]*driver-first*as-is*[]] _*",
            "test_own_engine.py:*: trtctx_nonzero: sentinel: output not written",
            "  [[]FAIL[]] sentinel: y: 4096 of 4096 elements never written",
            "*- trtctx contexts -*",
            "order: driver-first (cuCtxCreate on device 0*",
            "current context on thread MainThread at the start of the call: #1, a context of its "
            "own on device 0 (not the device's primary)",
            "at its end: #2, the primary context of device 0",
            "output 'y': memory of context #1",
            "what happened: the current context changed during the test, from #1 to #2. *",
            "fix: push the engine's context around its execution*",
        ]
    )
    assert "pytest_pyfunc_call" not in result.stdout.str()


STICKY_GPU_SUITE = """
import os
import torch
from test_own_engine import MyEngine

class Nowhere:
    def data_ptr(self):
        return 0x10  # no memory there: the kernel's write is an illegal address

def test_poisons(trtctx_order, record_property):
    record_property("pid", os.getpid())
    MyEngine().run(torch.ones(1024, device="cuda"), Nowhere(), 1024, push=False)
    # The launch's error is ignored, as users ignore execute_v2's: the test passes, and leaves
    # its context with a sticky CUDA_ERROR_ILLEGAL_ADDRESS.

def test_after(trtctx_order, record_property):
    record_property("pid", os.getpid())
    assert torch.ones(4, device="cuda").sum().item() == 4

def test_last(trtctx_order, record_property):
    record_property("pid", os.getpid())
"""


@requires_gpu
def test_a_worker_left_with_a_sticky_error_takes_no_more_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_own_engine=EXAMPLE.read_text(), test_sticky=STICKY_GPU_SUITE)
    result = run_pytest(
        pytester,
        "test_sticky.py",
        "--trtctx-order=torch-first",
        "--trtctx-isolate=order",
        "--trtctx-report=r.json",
        "--junitxml=out.xml",
    )
    result.assert_outcomes(passed=3)
    xml = (pytester.path / "out.xml").read_text()
    pids = dict(
        re.findall(r'name="(test_\w+)\[torch-first\]".*?name="pid" value="(\d+)"', xml, re.S)
    )
    assert pids["test_poisons"] != pids["test_after"] == pids["test_last"], pids
    tests = {
        t["nodeid"].split("::")[1]: t
        for t in json.loads((pytester.path / "r.json").read_text())["tests"]
    }
    assert any(
        "retired after a sticky CUDA error (CUDA_ERROR_ILLEGAL_ADDRESS)" in m
        for m in tests["test_after[torch-first]"]["messages"]
    ), tests["test_after[torch-first]"]["messages"]


def test_each_warning_is_counted_once_however_many_workers(pytester: pytest.Pytester) -> None:
    """Warnings recorded in the parent must not travel back up from every later worker (the
    hook that carries them replays its history to a plugin registered after the fork)."""
    pytester.makepyfile(
        """
        import pytest, warnings

        @pytest.mark.parametrize("n", range(12))
        def test_warns(trtctx_order, n):
            warnings.warn(f"number {n}", UserWarning)
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-workers=2"
    )
    result.assert_outcomes(passed=12, warnings=12)
