"""What a test leaves behind for its report, and how an outcome is classed.

The process that runs a test (the pytest process, an xdist worker or a forked worker) writes these
properties into its reports; the pytest process reads them back for the summary, the JSON report,
the baseline and the known-failure verdicts. Both sides import the names from here, so they cannot
drift apart. This module sits at the bottom of the package: it imports nothing of it but the
output holder of :mod:`.checks`.
"""

from __future__ import annotations

from typing import Any

import pytest

from .outputs import CheckFailure, Outputs

#: What the plan says of the test, for readers that have no item (an xdist controller): its
#: ``order``, planned ``backend`` and conv ``spec``.
PLAN_PROPERTY = "trtctx_plan"
#: Whether the test's order was applied in its process (``applied``), and met ``fresh``.
ORDER_PROPERTY = "trtctx_order"
#: Why the test ran in a fresh worker instead of the one it was given to (that one crashed, hung
#: or was retired after a sticky CUDA error).
NOTE_PROPERTY = "trtctx_worker_note"
#: The failure signature of a failed phase (``backend: CUDA_ERROR_INVALID_HANDLE``).
SIGNATURE_PROPERTY = "trtctx_signature"
#: The backend the test really ran on, and why that one.
BACKEND_PROPERTY = "trtctx_backend"
BACKEND_WHY_PROPERTY = "trtctx_backend_why"
#: ``{output name: sha256}`` of the outputs handed to the plugin.
OUTPUTS_PROPERTY = "trtctx_output_sha256"
#: ``{"order", "signature", "status"}`` of the known-failure declaration that applied.
KNOWN_PROPERTY = "trtctx_known_failure"
#: Outputs that differ from another environment's baseline (an upgrade), one line each.
DRIFT_PROPERTY = "trtctx_baseline_drift"
#: What the backend reported while running (CUDA results, engine log errors).
MESSAGES_PROPERTY = "trtctx_messages"
#: Which of its spec's plans the engine ran, where a backend builds several (cuDNN): ``{"backend",
#: "plan", "plans", "name"}``.
ENGINE_PROPERTY = "trtctx_engine"
#: The context tracer's record of the test: its mismatches in words, its events (bounded), or
#: why it was off.
TRACE_PROPERTY = "trtctx_trace"

#: A failed call's output checks, one line each (``[FAIL] sentinel: y: ...``), for the report.
CHECKS_PROPERTY = "trtctx_checks"
#: The report section that holds a failure's context diagnosis (the watch around the call); the
#: JSON report keeps its text as the test's ``diagnosis``.
CONTEXTS_SECTION = "trtctx contexts"

#: ``report.wasxfail`` of a known failure starts with this, which tells it from a plain xfail.
KNOWN_PREFIX = "known failure under "

#: A test's outcome is the most severe of its phases' outcomes.
OUTCOME_RANK: dict[str, int] = {
    "passed": 0,
    "skipped": 1,
    "xfailed": 1,
    "known-failure": 2,
    "failed": 3,
    "error": 3,
}

#: The test's outputs (fixture ``trtctx_outputs``, and every engine run through ``trtctx``).
OUTPUTS = pytest.StashKey[Outputs]()
#: The test's ``Runtime``, so that its report can carry what the backend said.
RUNTIME = pytest.StashKey[Any]()
#: Whether the test met its order fresh (the first test to use it in its process).
FRESH = pytest.StashKey[bool]()


def outputs_of(item: pytest.Item) -> Outputs:
    """The item's output holder, made on first use."""
    if OUTPUTS not in item.stash:
        item.stash[OUTPUTS] = Outputs()
    return item.stash[OUTPUTS]


def classify(report: pytest.TestReport) -> str | None:
    """One phase's outcome: passed, failed (in the call), error (in setup or teardown),
    skipped, xfailed, known-failure; None for a passing setup or teardown."""
    if hasattr(report, "wasxfail"):
        return "known-failure" if str(report.wasxfail).startswith(KNOWN_PREFIX) else "xfailed"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    if report.skipped:
        return "skipped"
    if report.passed and report.when == "call":
        return "passed"
    return None


def signature_of(exc: BaseException) -> str:
    """The failure signature of an exception: a check's own, else ``Type: first line``."""
    if isinstance(exc, CheckFailure):
        return exc.signature
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def properties(report: pytest.TestReport) -> dict[str, Any]:
    """The report's user properties as a dict (a serialized report makes its pairs lists)."""
    return {str(k): v for k, v in (tuple(p) for p in report.user_properties)}


#: The exit status of a run whose tests ended as pytest says but whose results (the report or
#: the baseline) could not be written where asked: distinct from pytest's own 0-5, so that CI
#: cannot take a run whose results are lost for a clean one. A run whose tests failed keeps
#: pytest's status (the failure is what CI must see first); the summary names what was not saved.
EXIT_UNSAVED = 6


def unsaved(session: pytest.Session) -> None:
    """Say that an output was not saved where asked (its writer's summary line says which and
    why): the exit status becomes
    :data:`EXIT_UNSAVED` where the tests alone would have given 0 (all passed) or 5 (none ran)."""
    if int(session.exitstatus) in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = EXIT_UNSAVED
