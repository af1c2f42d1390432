"""The output-check markers and known-failure declarations, on CPU tensors (no GPU needed)."""

from __future__ import annotations

import pytest

from pytest_trtctx.messages import (
    MARK_BACKEND,
    MARK_BITWISE_STABLE,
    MARK_KNOWN_FAILURE,
    MARK_NONZERO,
    MARK_ORDERS,
    MARK_TIMEOUT,
    MSG_ONLY_ORDERS,
)
from pytest_trtctx.settings.plan import MAX_BITWISE_RUNS

from ..conftest import cpu_orders, run_pytest

pytest.importorskip("torch", reason="torch is not installed: the output checks work on tensors")


def test_markers_are_registered_with_signatures(pytester: pytest.Pytester) -> None:
    result = run_pytest(pytester, "--markers")
    result.stdout.fnmatch_lines(
        [
            f"@pytest.mark.{MARK_ORDERS}(*orders):*",
            f"@pytest.mark.{MARK_KNOWN_FAILURE}(order, signature, reason=''):*",
            f"@pytest.mark.{MARK_NONZERO}:*",
            f"@pytest.mark.{MARK_BITWISE_STABLE}(runs=2):*",
            f"@pytest.mark.{MARK_TIMEOUT}(seconds):*",
        ],
        consecutive=False,
    )


NONZERO_SUITE = """
import pytest, torch

@pytest.mark.trtctx_nonzero
def test_good(trtctx_outputs):
    trtctx_outputs.add("y", torch.arange(1.0, 7.0))

@pytest.mark.trtctx_nonzero
def test_zeros(trtctx_outputs):
    trtctx_outputs.add("y", torch.zeros(4, 4))

@pytest.mark.trtctx_nonzero
def test_nan(trtctx_outputs):
    trtctx_outputs.add("y", torch.tensor([1.0, float("nan"), float("inf")]))

@pytest.mark.trtctx_nonzero
def test_never_written(trtctx_outputs):
    y = trtctx_outputs.empty((2, 3), dtype=torch.float16)
    y[0, :2] = 1.0  # a kernel that wrote only part of its output
    trtctx_outputs.add("y", y)

@pytest.mark.trtctx_nonzero
def test_written(trtctx_outputs):
    y = trtctx_outputs.empty((2, 3), dtype=torch.bfloat16)
    y.fill_(0.5)
    trtctx_outputs.add("y", y)

@pytest.mark.trtctx_nonzero
def test_nothing_handed_over(trtctx_outputs):
    pass
"""


def test_nonzero_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(NONZERO_SUITE)
    result = run_pytest(pytester, "-p", "no:cacheprovider", "--tb=short")
    result.assert_outcomes(passed=2, failed=4)
    result.stdout.fnmatch_lines(
        [
            "*_ test_zeros _*",
            "*test_nonzero_marker.py:*: trtctx_nonzero: nonzero: output all zeros",
            "*_ test_nan _*",
            "*test_nonzero_marker.py:*: trtctx_nonzero: finite: output has NaN/Inf",
            "*_ test_never_written _*",
            "*test_nonzero_marker.py:*: trtctx_nonzero: sentinel: output not written",
            "*_ test_nothing_handed_over _*",
            "*test_nonzero_marker.py:*: trtctx_nonzero: outputs: none handed over",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(["*[[]FAIL[]] sentinel: y: 4 of 6 elements never written*"])


def test_bitwise_stable_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest, torch
        CALLS = []

        @pytest.mark.trtctx_bitwise_stable(runs=3)
        def test_stable(trtctx_outputs):
            CALLS.append(1)
            trtctx_outputs.add("y", torch.linspace(0, 1, 50))

        @pytest.mark.trtctx_bitwise_stable(runs=3)
        def test_drifts(trtctx_outputs):
            CALLS.append(1)
            y = torch.ones(2, 5)
            if len(CALLS) % 3 == 0:
                y[1, 3] = 1.0000001
            trtctx_outputs.add("y", y)

        def test_ran_three_times_each():
            assert len(CALLS) == 6
        """
    )
    result = run_pytest(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*trtctx_bitwise_stable: bitwise: outputs differ between runs*",
            "*y: run 3 differs from run 1 first at index (1, 3): 1.0 vs 1.00000*sha256 run 1 *",
        ],
        consecutive=False,
    )


@pytest.mark.parametrize("runs", ["1", "'x'", "True"])
def test_bitwise_stable_bad_runs(pytester: pytest.Pytester, runs: str) -> None:
    pytester.makepyfile(
        f"""
        import pytest
        @pytest.mark.trtctx_bitwise_stable(runs={runs})
        def test_x(): pass
        """
    )
    result = run_pytest(
        pytester,
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*marker {MARK_BITWISE_STABLE} on *::test_x: runs must be an integer from 2 to *, got*"]
    )


def test_orders_marker_restricts(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.trtctx_orders("trt-first", "thread-hop")
        def test_some(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,trt-first",
        "--trtctx-isolate=order",
        "-rs",
    )
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*"
            + MSG_ONLY_ORDERS.format(
                wanted="trt-first, thread-hop", selected="torch-first, trt-first"
            )
        ]
    )


def test_orders_marker_with_an_unknown_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.trtctx_orders("torch-first", "gpu-first")
        def test_some(trtctx_order): pass
        """
    )
    result = run_pytest(pytester, "--trtctx-order=torch-first")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*marker trtctx_orders on *::test_some: unknown value 'gpu-first'; allowed: *"]
    )


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (f"{MARK_TIMEOUT}('soon')", f"marker {MARK_TIMEOUT} on {{test}}: expected a number"),
        (f"{MARK_TIMEOUT}(1, 2)", f"marker {MARK_TIMEOUT} on {{test}}: takes one number"),
        (f"{MARK_BACKEND}('tensorrt9')", f"marker {MARK_BACKEND} on {{test}}: unknown value"),
        (f"{MARK_BITWISE_STABLE}(runs=0)", f"marker {MARK_BITWISE_STABLE} on {{test}}: runs must"),
        (
            f"{MARK_BITWISE_STABLE}(runs=10**9)",
            f"marker {MARK_BITWISE_STABLE} on {{test}}: runs must be an integer from 2 to "
            f"{MAX_BITWISE_RUNS}, got 1000000000",
        ),
        (
            f"{MARK_BITWISE_STABLE}(3, runs=4)",
            f"marker {MARK_BITWISE_STABLE} on {{test}}: takes runs (one number, or runs=N)",
        ),
        (f"{MARK_NONZERO}(5)", f"marker {MARK_NONZERO} on {{test}}: takes no arguments, got (5)"),
        (
            f"{MARK_NONZERO}(atol=1)",
            f"marker {MARK_NONZERO} on {{test}}: takes no arguments, got (atol=1)",
        ),
        (f"{MARK_ORDERS}('gpu-first')", f"marker {MARK_ORDERS} on {{test}}: unknown value"),
        (f"{MARK_KNOWN_FAILURE}('gpu-first', 'x')", f"marker {MARK_KNOWN_FAILURE} on {{test}}:"),
    ],
)
def test_a_bad_marker_is_reported_once_at_collection_naming_the_test(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    """Every marker is read once, into the test's plan: a bad value stops the run before any
    test runs (a usage error), in one line naming the test function, however many orders and
    parameters multiply it."""
    pytester.makepyfile(
        f"""
        import pytest
        @pytest.mark.{marker}
        @pytest.mark.parametrize("n", [1, 2, 3])
        def test_multiplied(trtctx_order, n):
            open("ran", "w").close()
        """
    )
    result = run_pytest(pytester, "--trtctx-order=torch-first,trt-first")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    test = "test_a_bad_marker_is_reported_once_at_collection_naming_the_test.py::test_multiplied"
    expected = message.format(test=test)
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: {expected}"), errors
    assert not (pytester.path / "ran").exists()
