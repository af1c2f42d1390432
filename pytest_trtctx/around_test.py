"""Around each test, in the process that runs it: the order gate, the context watch, the record.

* **The order is a promise.** At setup, a test under an order runs only if this process applied
  that order's recipe first; where the order could not be applied here (no driver, too few
  devices, a library missing, CUDA initialised before the recipe) the test is skipped with the
  reason. Its report says whether the order was applied and whether the test met it fresh.
* **Which context ran it.** Around the call, the context current on the calling thread is read at
  the start and at the end (without initialising CUDA), and so is the context that owns each
  output handed to the plugin; a failed call gets the diagnosis in plain words.
* **What the tracer saw** (``--trtctx-trace``, the ``trtctx_trace`` marker): every launch of a
  kernel in another context than its module's, in one sentence naming the lines that loaded it,
  made the other context current and launched it; the timeline goes to the report.
* **The record.** Every report carries what the plan said (order, backend, spec), the failure
  signature, what the backend said and the hashes of the outputs; the baseline, the known
  failures, the report and the summary read these further out.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest

from .backends.plans import PlanSkipped
from .checks.outcomes import (
    CHECKS_PROPERTY,
    CONTEXTS_SECTION,
    ENGINE_PROPERTY,
    FRESH,
    MESSAGES_PROPERTY,
    ORDER_PROPERTY,
    OUTPUTS,
    OUTPUTS_PROPERTY,
    RUNTIME,
    SIGNATURE_PROPERTY,
    TRACE_PROPERTY,
    signature_of,
)
from .checks.outputs import CheckFailure, sha256
from .cuda import contexts
from .errors import OrderError
from .scenarios.diagnosis import context_diagnosis
from .settings import plan
from .settings.config import settings_of
from .trace.recorder import MSG_WOULD_ADD

SECTION = CONTEXTS_SECTION
TRACE_SECTION = "trtctx trace"


@dataclass
class _Watch:
    start: contexts.Snapshot | None
    end: contexts.Snapshot | None = None


WATCH = pytest.StashKey[_Watch]()


@dataclass
class _Traced:
    """A traced test: its process's tracer (None where it could not start, and why), and the
    index of the test's first event in the process's timeline."""

    tracer: Any
    since: int
    why_off: str | None

    def read(self) -> tuple[Any, list[Any]] | None:
        """(the process's timeline, the test's mismatches); None where the tracer is off. The
        timeline names the contexts for the whole failure: the trace section and the contexts
        section say them alike."""
        if self.tracer is None:
            return None
        from .trace.timeline import Timeline

        timeline = Timeline(self.tracer.events)
        return timeline, timeline.mismatches(self.since)

    def record(self, read: tuple[Any, list[Any]] | None) -> dict[str, Any]:
        if read is None:
            return {"on": False, "why_off": self.why_off}
        timeline, found = read
        said = [timeline.explain(m) for m in found]
        return {
            "on": True,
            "mismatches": list(dict.fromkeys(said)),
            "events": timeline.record(self.since, found),
            "untraced_launches": self.tracer.untraced_launches,
            "dropped": self.tracer.dropped,
            "trouble": list(self.tracer.trouble),
        }


TRACED = pytest.StashKey[_Traced]()


class TestRun:
    """Registered as ``trtctx-run``; ``watch`` turns the context watch on (an order selected)."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, watch: bool, prebuild: bool = False) -> None:
        self.watch = watch
        self.prebuild = prebuild

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Under --trtctx-isolate=none the scenario was applied in this process at session
        start: its engines are prebuilt once, here (a worker does it after its collection)."""
        settings = settings_of(session.config)
        if self.prebuild and settings.active and settings.isolate.value == "none":
            from .isolation.prebuild import prebuild_here

            prebuild_here(session.config, session.items, settings.orders.value[0])

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        # After skip marks were honoured (the skipping plugin runs first), before the fixtures:
        # a test skipped by a mark does not use up its process's fresh order.
        planned = plan.of(item)
        if planned.trace.value:
            from .trace import recorder as tracer

            running, why = tracer.start()
            item.stash[TRACED] = _Traced(running, len(running.events) if running else 0, why)
        order = planned.order
        if order is None:
            return
        from .isolation.worker import enter
        from .scenarios.process import process_of

        try:
            state, fresh = enter(process_of(item.config), order)
        except OrderError as exc:
            pytest.fail(str(exc), pytrace=False)
        if self.prebuild and state.applied and not fresh:
            from .isolation.prebuild import was_prebuilt

            fresh = was_prebuilt(item)  # its engine met the order fresh
        item.stash[FRESH] = fresh
        why = state.skip_reason or state.error
        item.user_properties.append(
            (ORDER_PROPERTY, {"applied": state.applied, "fresh": fresh, "why_not": why})
        )
        if state.skip_reason:  # reported at the test's own line, not this one
            raise pytest.skip.Exception(state.skip_reason, _use_item_location=True)
        if state.error:
            pytest.fail(state.error, pytrace=False)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        if not self.watch:
            return (yield)
        watch = item.stash[WATCH] = _Watch(contexts.current())
        try:
            return (yield)
        finally:
            watch.end = contexts.current()

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        excinfo = call.excinfo
        if excinfo is not None and report.failed:
            report.user_properties.append((SIGNATURE_PROPERTY, signature_of(excinfo.value)))
            if isinstance(excinfo.value, CheckFailure):
                checks = [
                    f"[{'ok' if r.ok else 'FAIL'}] {r.check}: {r.detail}"
                    for r in excinfo.value.results
                ]
                report.user_properties.append((CHECKS_PROPERTY, checks))
            if isinstance(excinfo.value, CheckFailure) and excinfo.value.plain:
                # The markers' checks ran after the body returned: no line of the test to show,
                # and the plugin's own frames would say nothing. The verdict says it all.
                path, lineno, _name = item.location
                report.longrepr = f"{path}:{(lineno or 0) + 1}: {excinfo.value}"
        # A plan slot with no plan to run keeps its record: which plan of how many it stood for
        # (the summary counts the plans offered, declined and run from these records).
        slot_skip = excinfo.value if excinfo and isinstance(excinfo.value, PlanSkipped) else None
        if slot_skip is not None:
            report.user_properties.append((ENGINE_PROPERTY, dict(slot_skip.record)))
        if call.when != "call":
            return report
        runtime = item.stash.get(RUNTIME, None)
        if runtime is not None and runtime.messages:
            report.user_properties.append((MESSAGES_PROPERTY, list(runtime.messages)))
        if runtime is not None and runtime.engine_record and slot_skip is None:
            report.user_properties.append((ENGINE_PROPERTY, dict(runtime.engine_record)))
        outputs = item.stash.get(OUTPUTS, None)
        if outputs is not None and outputs.current:
            hashes = {name: sha256(t) for name, t in outputs.current.items()}
            report.user_properties.append((OUTPUTS_PROPERTY, hashes))
        traced = item.stash.get(TRACED, None)
        read = traced.read() if traced is not None else None
        record = traced.record(read) if traced is not None else None
        if record is not None:
            report.user_properties.append((TRACE_PROPERTY, record))
        watch = item.stash.get(WATCH, None)
        if report.failed and watch is not None and (watch.start or watch.end):
            text = self._diagnosis(item, watch, read)
            if record is None:
                text += f"\nnot traced: {MSG_WOULD_ADD}"
            report.sections.append((SECTION, text))
        if report.failed and record is not None:
            report.sections.append((TRACE_SECTION, trace_text(record)))
        return report

    def _diagnosis(
        self, item: pytest.Item, watch: _Watch, read: tuple[Any, list[Any]] | None
    ) -> str:
        from .scenarios.process import process_of

        outputs = item.stash.get(OUTPUTS, None)
        owners = {
            name: contexts.owner(int(t.data_ptr())) if getattr(t, "is_cuda", False) else None
            for name, t in (outputs.current.items() if outputs is not None else ())
        }
        state = process_of(item.config).state
        steps = state.steps if state is not None else []
        return context_diagnosis(
            plan.of(item).order, steps, watch.start, watch.end, owners, traced=read
        )


def trace_text(record: dict[str, Any]) -> str:
    """A traced test's record in words, for its failure."""
    if not record.get("on"):
        return f"off: {record.get('why_off')}"
    lines = [f"launched in another context than its module's: {m}" for m in record["mismatches"]]
    if not lines:
        lines.append(
            "no launch of a traced kernel ran in another context than its module's "
            f"({record['untraced_launches']} launches of kernels whose module load was not seen "
            "were not followed: torch's own, or modules loaded before tracing started)"
        )
    lines += [f"tracer trouble: {t}" for t in record["trouble"]]
    return "\n".join(lines)
