"""Each test's plan (pytest_trtctx.settings.plan): made once at collection, read by everything
after."""

from __future__ import annotations

import pytest

from ..conftest import cpu_orders, run_pytest

PRINT_PLANS = """
from pytest_trtctx.settings import plan

def pytest_collection_finish(session):
    for item in session.items:
        p = plan.of(item)
        print("PLAN", item.name, p.order, p.backend.value, "|", p.backend.source, "|",
              p.timeout.value, "|", p.timeout.source, "|", p.bitwise_runs, p.nonzero,
              [k.orders for k in p.known_failures], p.known_failure is not None)
"""


def plans(result: pytest.RunResult) -> dict[str, str]:
    return {
        line.split()[1]: line.split(None, 2)[2]
        for line in result.stdout.lines
        if line.startswith("PLAN ")
    }


def test_markers_beat_options_and_options_beat_defaults(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PRINT_PLANS)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.trtctx_backend("cuda")
        @pytest.mark.trtctx_timeout(7)
        @pytest.mark.trtctx_bitwise_stable(runs=3)
        @pytest.mark.trtctx_known_failure("driver-first", "x")
        def test_marked(trtctx_order): pass

        @pytest.mark.trtctx_nonzero
        def test_plain(): pass
        """
    )
    result = run_pytest(
        pytester, "--collect-only", "--trtctx-order=trt-first,driver-first", "--trtctx-timeout=9"
    )
    got = plans(result)
    name = "test_markers_beat_options_and_options_beat_defaults.py::test_marked"
    assert got["test_marked[trt-first]"] == (
        f"trt-first cuda | marker trtctx_backend on {name} | 7.0 | marker trtctx_timeout on "
        f"{name} | 3 False [('driver-first',)] False"
    )
    assert got["test_marked[driver-first]"].endswith("3 False [('driver-first',)] True")
    # Not parametrised, two orders selected: no order of its own; option and default.
    assert (
        got["test_plain"] == "None auto | default | 9.0 | option --trtctx-timeout | 1 True [] False"
    )


def test_a_plain_test_meets_the_one_selected_order(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(PRINT_PLANS)
    pytester.makepyfile("def test_plain(): pass")
    assert plans(run_pytest(pytester, "--collect-only", "--trtctx-order=thread-hop"))[
        "test_plain"
    ].startswith("thread-hop auto")
    assert plans(run_pytest(pytester, "--collect-only"))["test_plain"].startswith("None auto")


def test_the_orders_marker_skips_the_others_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.trtctx_orders("trt-first")
        def test_some(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first,torch-first", "-rs"
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED * runs only under trt-first; selected: *"])
