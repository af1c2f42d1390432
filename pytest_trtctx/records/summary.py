"""What the plugin prints: its header lines, and the ``trtctx summary`` at the end of the run
(outcomes per order and backend, cuDNN's plans per spec, and the most frequent failure
signatures).

Registered as a plugin object (``trtctx-summary``) in the pytest process. A test's row is its
plan's order and the backend its process reported (else its planned backend); its outcome is the
most severe of its phases'. An order that could not be applied says why, once. Where cuDNN plan
slots ran (``--trtctx-backend=cudnn``), one line says how many plans cuDNN offered per spec and
how many of them ran, were declined, or lay past the slots.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..backends.plans import BACKEND as PLANS_BACKEND
from ..checks.outcomes import (
    BACKEND_PROPERTY,
    ENGINE_PROPERTY,
    ORDER_PROPERTY,
    OUTCOME_RANK,
    PLAN_PROPERTY,
    SIGNATURE_PROPERTY,
    classify,
    properties,
)
from ..messages import ALL_HAZARDS, ALL_ORDERS, INSTALL_TRACE
from ..scenarios import ORDER
from ..settings.config import Settings, settings_of


def _no_cupti() -> str:
    """What the header adds to "context tracer on" where cupti-python is missing (found, not
    imported): each test would say so only when it failed."""
    from .. import backends

    if backends.installed("cupti"):
        return ""
    return f", but cupti-python is not installed: nothing is traced; {INSTALL_TRACE}"


def header_lines(s: Settings) -> list[str]:
    """The lines the plugin adds to pytest's header: what is in force, the machine, versions."""
    from .. import backends
    from ..cuda import probe

    listed = s.backends.value
    why = "; ".join(backends.describe(name) for name in listed)
    each = "backends" if len(listed) > 1 else "backend"
    workers = (
        f", {s.workers.value} workers ({s.workers.source})" if s.isolate.value != "none" else ""
    )
    lines = [
        f"trtctx: orders {', '.join(s.orders.value)} ({s.orders.source}); "
        f"isolate {s.isolate.value} ({s.isolate.source}{workers}); device {s.device.value}; "
        f"{each} {', '.join(listed)} ({s.backends.source}): {why}"
        + (f"; context tracer on ({s.trace.source}{_no_cupti()})" if s.trace.value else "")
        + (f"; fast contexts ({s.fast_contexts.source})" if s.fast_contexts.value else ""),
    ]
    if s.active:
        lines.append("trtctx: " + probe.machine().describe())
    else:  # nothing above is in force: say so in one line
        lines = [
            "trtctx: no order selected: tests run as pytest runs them "
            f"(select one with --trtctx-order: {', '.join(s.registry.of_kind(ORDER))} or "
            f"{ALL_ORDERS}; or {ALL_HAZARDS}: every context hazard)"
        ]
    lines.append("trtctx: " + ", ".join(f"{k} {v}" for k, v in probe.versions().items()))
    return lines


COLUMNS = ("passed", "failed", "known-failure", "skipped")
#: The row of the tests under no order (so that the summary accounts for every test).
NO_ORDER = "(no order)"


class Summary:
    """Counts the run's outcomes per (order, backend) and prints them. It reads what each test's
    process put in its reports (so it works in an xdist controller, which holds no items)."""

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        rows, signatures, not_applied = count(terminalreporter.stats)
        if all(order == NO_ORDER for order, _backend in rows):
            return  # no test ran under an order: the plugin has nothing to sum up
        tr = terminalreporter
        tr.write_sep("=", "trtctx summary")
        wide = max(14, *(len(order) for order, _backend in rows))  # a hazard's name is longer
        tr.write_line(f"{'order':<{wide}} {'backend':<12} " + " ".join(f"{c:>13}" for c in COLUMNS))
        # The registry's order (shipped, then registered scenarios), then any other it met.
        known = settings_of(tr.config).registry.names()
        met = sorted({o for o, _b in rows} - {*known, NO_ORDER})
        scenarios = (*known, *met)
        for order in (*scenarios, NO_ORDER):
            for (o, backend), counts in sorted(rows.items()):
                if o == order:
                    tr.write_line(
                        f"{order:<{wide}} {backend:<12} "
                        + " ".join(f"{counts.get(c, 0):>13}" for c in COLUMNS)
                    )
        plans = plans_line(cudnn_plans(tr.stats), settings_of(tr.config).cudnn_plans.value)
        if plans:
            tr.write_line(plans)
        by_reason: dict[str, list[str]] = {}
        for order in scenarios:
            for why in sorted(not_applied.get(order, ())):
                by_reason.setdefault(why, []).append(order)
        for why, orders in by_reason.items():
            tr.write_line(f"{', '.join(orders)}: not applied here, its tests skipped: {why}")
        if signatures:
            tr.write_line("most frequent failure signatures:")
            for (sig, kind), count_ in signatures.most_common(5):
                tr.write_line(f"  {count_:>5}  {sig}  [{kind}]")


def count(
    stats: dict[str, list[Any]],
) -> tuple[dict[tuple[str, str], Counter[str]], Counter[tuple[str, str]], dict[str, set[str]]]:
    """Outcome counts per (order, backend); (signature, outcome) counts; per order, why it was
    not applied where it was not."""
    final: dict[str, tuple[str, str | None]] = {}
    row_of: dict[str, tuple[str, str]] = {}
    ran_on: dict[str, str] = {}  # the backend each test really ran on, as its process said
    not_applied: dict[str, set[str]] = {}
    for reports in stats.values():
        for report in reports:
            if not isinstance(report, pytest.TestReport):
                continue
            props = properties(report)
            planned = props.get(PLAN_PROPERTY)
            if not isinstance(planned, dict):
                continue
            order = str(planned["order"]) if planned.get("order") else NO_ORDER
            row_of[report.nodeid] = (order, str(planned.get("backend")))
            state = props.get(ORDER_PROPERTY)
            if isinstance(state, dict) and state.get("why_not"):
                not_applied.setdefault(order, set()).add(str(state["why_not"]))
            if isinstance(props.get(BACKEND_PROPERTY), str):
                ran_on[report.nodeid] = props[BACKEND_PROPERTY]
            kind = classify(report)
            if kind is None:
                continue
            kind = "failed" if kind == "error" else kind
            sig = props.get(SIGNATURE_PROPERTY)
            old = final.get(report.nodeid)
            if old is None or OUTCOME_RANK[kind] > OUTCOME_RANK[old[0]]:
                final[report.nodeid] = (kind, sig if isinstance(sig, str) else old and old[1])
    rows: dict[tuple[str, str], Counter[str]] = {}
    signatures: Counter[tuple[str, str]] = Counter()
    for nodeid, (kind, sig) in final.items():
        order, planned_backend = row_of[nodeid]
        rows.setdefault((order, ran_on.get(nodeid) or planned_backend), Counter())[kind] += 1
        if sig and kind in ("failed", "known-failure"):
            signatures[(sig, kind)] += 1
    return rows, signatures, not_applied


#: The cuDNN plans line. A spec's plans are counted once, whatever the orders its slots ran
#: under: a plan counts as run where it ran under any order (passed, failed or a known failure),
#: as declined where the frontend declined it and it ran under no order.
PLANS_LINE = (
    "cudnn plans, each spec once over all orders: {specs}, {offered} offered ({per_spec} per "
    "spec), {ran} run, {declined} declined by the frontend, {past} past the {slots} plan "
    "slot(s) per spec (--trtctx-cudnn-plans)"
)
#: Added where plans within the slots neither ran nor were declined (a slot deselected, or
#: skipped for another reason after its plan was picked).
PLANS_NOT_RUN = "; {count} within the slots not run (skipped otherwise, or not selected)"


@dataclass
class SpecPlans:
    """What the run's records say of one spec's cuDNN plans: how many were offered, and which
    plan indices ran and which the frontend declined (under any order)."""

    offered: int = 0
    ran: set[int] = field(default_factory=set)
    declined: set[int] = field(default_factory=set)


def cudnn_plans(stats: dict[str, list[Any]]) -> dict[str, SpecPlans]:
    """Per spec name, its cuDNN plans as the tests' engine records say (read from the reports
    each test's process sent, so it works in an xdist controller). A record is a slot's: its
    plan index and how many plans were offered; a slot past them stood for no plan."""
    specs: dict[str, SpecPlans] = {}
    for reports in stats.values():
        for report in reports:
            if not isinstance(report, pytest.TestReport):
                continue
            props = properties(report)
            record, planned = props.get(ENGINE_PROPERTY), props.get(PLAN_PROPERTY)
            if not isinstance(record, dict) or record.get("backend") != PLANS_BACKEND:
                continue
            slot, offered = record.get("plan"), record.get("plans")
            spec = planned.get("spec") if isinstance(planned, dict) else None
            name = spec.get("name") if isinstance(spec, dict) else None
            if not (isinstance(slot, int) and isinstance(offered, int) and isinstance(name, str)):
                continue  # the graph's own choice (no slot), or a test with no spec of the matrix
            entry = specs.setdefault(name, SpecPlans())
            entry.offered = max(entry.offered, offered)
            if slot >= offered:
                continue
            if record.get("declined"):
                entry.declined.add(slot)
            elif classify(report) not in (None, "skipped"):
                entry.ran.add(slot)
    return specs


def plans_line(specs: dict[str, SpecPlans], slots: int) -> str | None:
    """The summary's line on cuDNN's plans (``slots`` per spec), None where no test has a
    slot's record."""
    if not specs:
        return None
    offered = [s.offered for s in specs.values()]
    ran = sum(len(s.ran) for s in specs.values())
    declined = sum(len(s.declined - s.ran) for s in specs.values())
    within = sum(min(s.offered, slots) for s in specs.values())
    low, high = min(offered), max(offered)
    line = PLANS_LINE.format(
        specs=f"{len(specs)} spec" + ("s" if len(specs) != 1 else ""),
        offered=sum(offered),
        per_spec=f"{low}-{high}" if low != high else str(low),
        ran=ran,
        declined=declined,
        past=sum(max(0, n - slots) for n in offered),
        slots=slots,
    )
    if within > ran + declined:
        line += PLANS_NOT_RUN.format(count=within - ran - declined)
    return line
