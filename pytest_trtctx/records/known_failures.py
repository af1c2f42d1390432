"""Known failures: a declared failure passes while it reproduces and fails the day it stops.

Registered as a plugin object in the process that runs the tests. It reads each test's
declaration from its plan and turns the call's report into the verdict:

* failed with a matching signature: reproduced, reported as xfailed (``known failure under ...``);
* passed: stopped reproducing, which FAILS the test (behaviour changed: update the declaration);
* failed otherwise: failed differently, the failure stands with a note;
* only the first test to meet its order fresh is held to the declaration (a later one in the same
  process shares a context with torch already: not enforced, with a note);
* a test whose engine is declared defective whatever the contexts (a cuDNN engine,
  ``backends.cudnn.DEFECTS``: the engine's record says so) is held to that declaration where its
  order declares nothing, fresh or not.
"""

from __future__ import annotations

import re
from collections.abc import Generator

import pytest

from ..checks.outcomes import (
    FRESH,
    KNOWN_PREFIX,
    KNOWN_PROPERTY,
    RUNTIME,
    SIGNATURE_PROPERTY,
    signature_of,
)
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
        if call.when != "call":
            return report
        planned = plan.of(item)
        known = planned.known_failure
        fresh = item.stash.get(FRESH, True)
        # An engine declared defective whatever the contexts (backends.cudnn.DEFECTS) holds where
        # the order declares nothing, or where the order's declaration is not enforced (the test
        # did not meet the order fresh): the engine is as wrong in either case.
        defect = engine_defect(item) if known is None or not fresh else None
        if defect is not None:
            known = None
            expected, reason = defect["signature"], defect["reason"]
        elif known is not None:
            expected, reason = known.signature, known.reason or "no reason given"
        else:
            return report
        order = planned.order
        signature = None
        if call.excinfo is not None and report.failed:
            signature = signature_of(call.excinfo.value)
        if known is not None and not fresh:
            status = "not enforced"
            report.sections.append((SECTION, MSG_KNOWN_FAILURE_STALE.format(order=order)))
        elif report.passed:
            status = "stopped reproducing"
            report.outcome = "failed"
            report.longrepr = MSG_KNOWN_FAILURE_GONE.format(
                order=order, signature=expected, reason=reason
            )
            report.user_properties.append((SIGNATURE_PROPERTY, "known failure stopped reproducing"))
        elif report.failed and signature is not None and re.search(expected, signature):
            status = "reproduced"
            report.outcome = "skipped"
            report.wasxfail = f"{KNOWN_PREFIX}{order}: {signature}"
        elif report.failed:
            status = "failed differently"
            report.sections.append(
                (
                    SECTION,
                    MSG_KNOWN_FAILURE_OTHER.format(order=order, signature=expected, got=signature),
                )
            )
        else:
            status = "skipped"
        report.user_properties.append(
            (KNOWN_PROPERTY, {"order": order, "signature": expected, "status": status})
        )
        return report


def engine_defect(item: pytest.Item) -> dict[str, str] | None:
    """The defect declared for the engine the test ran (its record's ``known_defect``: a cuDNN
    engine a GPU showed to be wrong whatever the contexts), if any."""
    runtime = item.stash.get(RUNTIME, None)
    record = getattr(runtime, "engine_record", None)
    found = record.get("known_defect") if isinstance(record, dict) else None
    return found if isinstance(found, dict) else None
