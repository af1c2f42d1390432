"""How an isolated run's items are cut into worker groups (``isolation.grouping``), seen from the
processes the tests ran in: a pytester run each, on CPU (the CPU stand-ins of the scenarios)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pytest_trtctx.isolation.grouping import PART_TESTS

from ..conftest import cpu_orders, run_pytest

#: Each test records the process it ran in.
PIDS = """
import os, pytest

@pytest.mark.parametrize("n", range(TESTS))
def test_p(trtctx_order, n, record_property):
    record_property("pid", os.getpid())
"""


def _pids_and_order(
    pytester: pytest.Pytester, orders: str, workers: int, tests: int = 6
) -> tuple[dict[str, set[str]], list[str]]:
    """Run ``tests`` tests of PIDS under each of ``orders``: each scenario's processes, and the
    scenarios in the order their tests were reported."""
    pytester.makepyfile(test_pids=PIDS.replace("TESTS", str(tests)))
    xml = pytester.path / "junit.xml"
    result = run_pytest(
        pytester, *cpu_orders(pytester), f"--trtctx-order={orders}", "--trtctx-isolate=order",
        f"--trtctx-workers={workers}", f"--junitxml={xml}",
    )  # fmt: skip
    result.assert_outcomes(passed=tests * len(orders.split(",")))
    pids: dict[str, set[str]] = {}
    reported: list[str] = []
    for case in ET.parse(xml).iter("testcase"):
        order = case.get("name", "").split("[")[1].split("-")
        name = "-".join(order[:2])
        pid = next(p.get("value") for p in case.iter("property") if p.get("name") == "pid")
        pids.setdefault(name, set()).add(str(pid))
        reported.append(name)
    return pids, reported


def test_a_scenario_every_test_meets_fresh_is_cut_only_past_a_workers_share(
    pytester: pytest.Pytester,
) -> None:
    """Under isolate=order an init order's tests share one process (only its first test meets
    it fresh); a hazard's (every test meets it fresh) are cut so that no part holds more than a
    worker's share of the run: 18 tests on 3 workers (a share of 6) keep each scenario whole;
    12 on 3 (a share of 4) cut the hazard's six in two; alone (a share of 2), in three."""
    pids, _ = _pids_and_order(pytester, "torch-first,foreign-stream,graph-capture", 3)
    assert {k: len(v) for k, v in pids.items()} == {
        "torch-first": 1, "foreign-stream": 1, "graph-capture": 1,
    }, pids  # fmt: skip
    pids, _ = _pids_and_order(pytester, "torch-first,foreign-stream", 3)
    assert len(pids["torch-first"]) == 1 and len(pids["foreign-stream"]) == 2, pids
    pids, _ = _pids_and_order(pytester, "foreign-stream", 3)
    assert len(pids["foreign-stream"]) == 3, pids


def test_a_scenario_every_test_meets_fresh_gets_a_process_per_part_tests(
    pytester: pytest.Pytester,
) -> None:
    """Where the run's share keeps it whole (2 x PART_TESTS tests of a hazard and as many of an
    init order on 2 workers: a share of 2 x PART_TESTS), its tests still get a process per
    PART_TESTS of them (cuDNN's plans: hundreds of tests a scenario)."""
    pids, _ = _pids_and_order(pytester, "torch-first,foreign-stream", 2, tests=2 * PART_TESTS)
    assert {k: len(v) for k, v in pids.items()} == {"torch-first": 1, "foreign-stream": 2}


def test_the_groups_of_a_scenario_every_test_meets_fresh_go_first(
    pytester: pytest.Pytester,
) -> None:
    """One worker runs the groups in the queue's order: the hazard's first, though collected
    after the init orders' (its tests are the run's longest)."""
    _, reported = _pids_and_order(pytester, "torch-first,graph-capture,foreign-stream", 1)
    assert reported == ["foreign-stream"] * 6 + ["torch-first"] * 6 + ["graph-capture"] * 6
