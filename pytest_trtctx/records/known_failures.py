"""Known failures: a declared failure passes while it reproduces and fails the day it stops.

Registered as a plugin object in the process that runs the tests. It reads each test's
declaration from its plan and turns the call's report into the verdict:

* failed with a matching signature: reproduced, reported as xfailed (``known failure under ...``);
* passed: stopped reproducing, which FAILS the test (behaviour changed: update the declaration);
* failed otherwise: failed differently, the failure stands with a note;
* only the first test to meet its order fresh is held to the declaration (a later one in the same
  process shares a context with torch already: not enforced, with a note).
"""

from __future__ import annotations

import re
from collections.abc import Generator

import pytest

from ..checks.outcomes import FRESH, KNOWN_PREFIX, KNOWN_PROPERTY, SIGNATURE_PROPERTY, signature_of
from ..messages import MSG_KNOWN_FAILURE_GONE, MSG_KNOWN_FAILURE_OTHER, MSG_KNOWN_FAILURE_STALE
from ..settings import plan

SECTION = "trtctx known failure"


class KnownFailures:
    """The verdict on each declared test's call (registered as ``trtctx-known``)."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        planned = plan.of(item)
        known = planned.known_failure
        if call.when != "call" or known is None:
            return report
        order = planned.order
        signature = None
        if call.excinfo is not None and report.failed:
            signature = signature_of(call.excinfo.value)
        if not item.stash.get(FRESH, True):
            status = "not enforced"
            report.sections.append((SECTION, MSG_KNOWN_FAILURE_STALE.format(order=order)))
        elif report.passed:
            status = "stopped reproducing"
            report.outcome = "failed"
            report.longrepr = MSG_KNOWN_FAILURE_GONE.format(
                order=order, signature=known.signature, reason=known.reason or "no reason given"
            )
            report.user_properties.append((SIGNATURE_PROPERTY, "known failure stopped reproducing"))
        elif report.failed and signature is not None and re.search(known.signature, signature):
            status = "reproduced"
            report.outcome = "skipped"
            report.wasxfail = f"{KNOWN_PREFIX}{order}: {signature}"
        elif report.failed:
            status = "failed differently"
            report.sections.append(
                (
                    SECTION,
                    MSG_KNOWN_FAILURE_OTHER.format(
                        order=order, signature=known.signature, got=signature
                    ),
                )
            )
        else:
            status = "skipped"
        report.user_properties.append(
            (KNOWN_PROPERTY, {"order": order, "signature": known.signature, "status": status})
        )
        return report
