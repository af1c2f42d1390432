"""Known failures (pytest_trtctx.records.known_failures): a declared failure passes while it
reproduces and fails
the day it stops or fails differently. Through pytester, on CPU-only tests."""

from __future__ import annotations

import pytest

from pytest_trtctx.messages import (
    MSG_KNOWN_FAILURE_GONE,
    MSG_KNOWN_FAILURE_OTHER,
    MSG_KNOWN_FAILURE_STALE,
)

from ..conftest import cpu_orders, run_pytest

KNOWN_SUITE = """
import pytest


@pytest.mark.trtctx_known_failure("trt-first", r"RuntimeError: launch failed", reason="bug 1")
def test_reproduces(trtctx_order):
    if trtctx_order == "trt-first":
        raise RuntimeError("launch failed: invalid handle")

@pytest.mark.trtctx_known_failure("trt-first", r"RuntimeError: launch failed", reason="bug 2")
def test_stopped(trtctx_order):
    pass

@pytest.mark.trtctx_known_failure("trt-first", r"RuntimeError: launch failed", reason="bug 3")
def test_other_failure(trtctx_order):
    if trtctx_order == "trt-first":
        raise ValueError("something else")
"""


@pytest.mark.parametrize("isolate", ["none", "test"])
def test_known_failure(pytester: pytest.Pytester, isolate: str) -> None:
    pytester.makepyfile(KNOWN_SUITE)
    orders = ["--trtctx-order=trt-first"] + (
        ["--trtctx-order=torch-first"] if isolate != "none" else []
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), *orders, f"--trtctx-isolate={isolate}", "-rxf"
    )
    if isolate == "none":
        # One process for the three: only the first meets the order fresh and is held to its
        # declaration; the others must pass like any test, and are told why.
        result.assert_outcomes(passed=1, failed=1, xfailed=1)
        result.stdout.fnmatch_lines(["*" + MSG_KNOWN_FAILURE_STALE.format(order="trt-first")])
        return
    # Under torch-first the declarations do not apply: all three pass there.
    result.assert_outcomes(passed=3, failed=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            MSG_KNOWN_FAILURE_GONE.format(
                order="trt-first", signature="RuntimeError: launch failed", reason="bug 2"
            ),
            "XFAIL *test_reproduces[[]trt-first[]] - known failure under trt-first: "
            "RuntimeError: launch failed: invalid handle",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        [
            "*"
            + MSG_KNOWN_FAILURE_OTHER.format(
                order="trt-first",
                signature="RuntimeError: launch failed",
                got="ValueError: something else",
            )
        ]
    )


def test_known_failure_bad_declarations(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.trtctx_known_failure("gpu-first", "x")
        def test_a(): pass
        @pytest.mark.trtctx_known_failure("torch-first", "(unclosed")
        def test_b(): pass
        @pytest.mark.trtctx_known_failure("torch-first")
        def test_c(): pass
        """
    )
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*marker trtctx_known_failure on *::test_a: unknown value 'gpu-first'*",
            "*marker trtctx_known_failure on *::test_b: signature '(unclosed' is not a regex*",
            "*marker trtctx_known_failure on *::test_c: needs an order and a signature regex*",
        ]
    )


DEFECT_SUITE = """
import types

import pytest

from pytest_trtctx.checks.outcomes import RUNTIME

DEFECT = {"signature": r"^RuntimeError: wrote 71 of 512", "reason": "engine 52 writes a part"}


@pytest.fixture
def defective(request):
    # What the runtime records of a cuDNN plan whose engine is declared defective
    # (backends.plans.pick): the verdict reads the record, whatever ran the engine.
    record = {"known_defect": DEFECT}
    request.node.stash[RUNTIME] = types.SimpleNamespace(engine_record=record, messages=[])


@pytest.mark.trtctx_known_failure("trt-first", r"RuntimeError: launch failed", reason="order")
def test_the_orders_declaration_comes_first(defective, trtctx_order):
    raise RuntimeError("launch failed")

def test_reproduces(defective, trtctx_order):
    raise RuntimeError("wrote 71 of 512 outputs")

@pytest.mark.trtctx_known_failure("trt-first", r"RuntimeError: launch failed", reason="order")
def test_the_defect_holds_where_the_orders_is_not_enforced(defective, trtctx_order):
    raise RuntimeError("wrote 71 of 512 outputs")  # not the first in its process

def test_stopped(defective, trtctx_order):
    pass

def test_other_failure(defective, trtctx_order):
    raise ValueError("something else")
"""


def test_an_engine_declared_defective_is_held_to_it_under_every_order(
    pytester: pytest.Pytester,
) -> None:
    """A cuDNN engine a GPU showed to be wrong whatever the contexts (``backends.cudnn.DEFECTS``):
    its tests pass while it reproduces, fail the day it stops or fails otherwise; an order's own
    declaration is read first. In one process too (a defect is not a fresh process's matter)."""
    pytester.makepyfile(DEFECT_SUITE)
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-isolate=none",
        "-rxf",
    )  # fmt: skip
    result.assert_outcomes(failed=2, xfailed=3)
    result.stdout.fnmatch_lines(
        [
            MSG_KNOWN_FAILURE_GONE.format(
                order="trt-first", signature=r"^RuntimeError: wrote 71 of 512", reason="engine 52 "
                "writes a part",
            ),
        ],
        consecutive=False,
    )  # fmt: skip
    result.stdout.fnmatch_lines(
        [
            "XFAIL *test_the_orders_declaration_comes_first[[]trt-first[]] - known failure under "
            "trt-first: RuntimeError: launch failed",
            "XFAIL *test_reproduces[[]trt-first[]] - known failure under trt-first: "
            "RuntimeError: wrote 71 of 512 outputs",
            "XFAIL *test_the_defect_holds_where_the_orders_is_not_enforced[[]trt-first[]] - known "
            "failure under trt-first: RuntimeError: wrote 71 of 512 outputs",
        ],
        consecutive=False,
    )
    assert "test_other_failure" in result.stdout.str()
