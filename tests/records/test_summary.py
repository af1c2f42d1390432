"""The plugin's header lines and the ``trtctx summary`` (pytest_trtctx.records.summary)."""

from __future__ import annotations

import pytest

from pytest_trtctx.scenarios import HAZARDS

from ..conftest import cpu_orders, run_pytest

SUITE = """
import pytest

@pytest.mark.trtctx_known_failure("trt-first", r"RuntimeError: launch failed")
def test_known(trtctx_order):
    if trtctx_order == "trt-first":
        raise RuntimeError("launch failed: invalid handle")

def test_passes(trtctx_order): pass

def test_skips(trtctx_order):
    pytest.skip("not here")

def test_fails_under_torch_first(trtctx_order):
    assert trtctx_order != "torch-first", "boom"

def test_plain(): pass
"""


def test_summary_counts_each_test_once_per_order_and_lists_signatures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(SUITE)
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,trt-first",
        "--trtctx-isolate=order",
    )
    result.assert_outcomes(passed=5, failed=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*= trtctx summary =*",
            "order*backend*passed*failed*known-failure*skipped",
            "torch-first * auto * 2 * 1 * 0 * 1",
            "trt-first * auto * 2 * 0 * 1 * 1",
            "most frequent failure signatures:",
        ]
    )
    for line in (
        "* 1  RuntimeError: launch failed: invalid handle  [[]known-failure[]]",
        "* 1  AssertionError: boom  [[]failed[]]",
    ):
        result.stdout.fnmatch_lines([line])


def test_no_summary_when_no_test_ran_under_an_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    result = run_pytest(pytester, *cpu_orders(pytester))
    result.assert_outcomes(passed=1)
    assert "trtctx summary" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["trtctx: no order selected: tests run as pytest runs them (select one with *"]
    )


def test_the_hazards_have_rows_of_their_own_in_columns_wide_enough(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_passes(trtctx_order): pass")
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=torch-first,hazards")
    result.assert_outcomes(passed=1 + len(HAZARDS))
    result.stdout.fnmatch_lines(
        [
            "order             backend * passed *",
            "torch-first       auto * 1 *",
            "foreign-stream    auto * 1 *",
            "graph-capture     auto * 1 *",
            "context-destroyed auto * 1 *",
            "fork-after-init   auto * 1 *",
            "lazy-stall        auto * 1 *",
            "device-hop        auto * 1 *",
        ]
    )
