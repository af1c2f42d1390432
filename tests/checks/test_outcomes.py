"""How an outcome is classed and a failure signed (pytest_trtctx.checks.outcomes)."""

from __future__ import annotations

from typing import Any

import pytest
from _pytest.reports import TestReport

from pytest_trtctx.checks.outcomes import (
    KNOWN_PREFIX,
    OUTCOME_RANK,
    classify,
    properties,
    signature_of,
)
from pytest_trtctx.checks.outputs import CheckFailure, CheckResult


def report(when: str, outcome: str, **extra: Any) -> TestReport:
    rep = TestReport("t.py::t", ("t.py", 0, "t"), {}, outcome, None, when)  # type: ignore[arg-type]
    for key, value in extra.items():
        setattr(rep, key, value)
    return rep


@pytest.mark.parametrize(
    ("when", "outcome", "extra", "expected"),
    [
        ("call", "passed", {}, "passed"),
        ("setup", "passed", {}, None),
        ("teardown", "passed", {}, None),
        ("call", "failed", {}, "failed"),
        ("setup", "failed", {}, "error"),
        ("teardown", "failed", {}, "error"),
        ("setup", "skipped", {}, "skipped"),
        ("call", "skipped", {"wasxfail": "plain reason"}, "xfailed"),
        ("call", "skipped", {"wasxfail": KNOWN_PREFIX + "driver-first: x"}, "known-failure"),
    ],
)
def test_classify(when: str, outcome: str, extra: dict[str, Any], expected: str | None) -> None:
    assert classify(report(when, outcome, **extra)) == expected


def test_every_outcome_has_a_rank_and_failures_rank_highest() -> None:
    assert set(OUTCOME_RANK) == {"passed", "skipped", "xfailed", "known-failure", "failed", "error"}
    assert max(OUTCOME_RANK.values()) == OUTCOME_RANK["failed"] == OUTCOME_RANK["error"]


def test_signature_of_a_check_failure_is_its_first_failed_check() -> None:
    failure = CheckFailure(
        [
            CheckResult("backend", True, "ok"),
            CheckResult("sentinel", False, "y: never written", "sentinel: output not written"),
            CheckResult("nonzero", False, "zeros", "nonzero: output all zeros"),
        ]
    )
    assert signature_of(failure) == "sentinel: output not written"


def test_signature_of_any_other_exception_is_its_type_and_first_line() -> None:
    assert signature_of(RuntimeError("launch failed\nmore")) == "RuntimeError: launch failed"
    assert signature_of(KeyError()) == "KeyError:"


def test_properties_read_pairs_a_serialized_report_made_lists() -> None:
    rep = report("call", "passed")
    rep.user_properties = [["a", 1], ("b", {"x": 2})]  # type: ignore[list-item]
    assert properties(rep) == {"a": 1, "b": {"x": 2}}
