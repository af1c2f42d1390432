"""Engines that hold several plans (cuDNN's execution plans): which one a test's slot runs.

The slots themselves (one test per plan index) are made at collection by
:mod:`pytest_trtctx.settings.plan_slots`; here, in the test's own process after the build, the
slot picks its plan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# pytest's skip exception: public as ``pytest.skip.Exception``, which a type checker cannot
# take as a base class; this is the same class.
from _pytest.outcomes import Skipped

from ..messages import MSG_PLAN_NOT_BUILT, MSG_PLAN_NOT_OFFERED, MSG_PLANS_CUT
from .base import with_plan
from .cudnn_graph import NOT_BUILT_PAST

if TYPE_CHECKING:
    from .base import Engine

#: The backend whose engines have plan slots.
BACKEND = "cudnn"


class PlanSkipped(Skipped):
    """A slot's skip (past the plans offered, or a plan the frontend declined) that carries the
    slot's record: the report of a skipped slot says which plan of how many it stood for, so that
    the summary can tell plans not offered from plans declined without reading skip messages."""

    def __init__(self, msg: str, record: dict[str, Any]) -> None:
        super().__init__(msg)
        self.record = record


def slot_id(index: int) -> str:
    """A slot's part of the test id."""
    return f"plan{index}"


def pick(engine: Engine, slot: int | None, slots: int) -> tuple[Engine, dict[str, Any], list[str]]:
    """Where ``engine`` holds several plans (cuDNN's, ``details["plans"]``), the engine that runs
    the plan of ``slot`` (of ``slots``), the record of what runs, and what to say of it; a slot
    past the plans, or a plan the library declined to build, skips the test with why
    (:class:`PlanSkipped`, which carries the record; a declined plan's says ``declined``: the
    library's words). An engine with one plan is returned as it is, with no record."""
    plans = engine.details.get("plans")
    if not isinstance(plans, list):
        return engine, {}, []
    spec, count = engine.spec.name, len(plans)
    name = plans[slot]["name"] if slot is not None and slot < count else None
    record = {"backend": BACKEND, "plan": slot, "plans": count, "name": name}
    if slot is None:
        return engine, record, []
    if slot >= count:
        raise PlanSkipped(
            MSG_PLAN_NOT_OFFERED.format(count=count, spec=spec, slot=slot_id(slot)), record
        )
    if not plans[slot]["built"]:
        why = plans[slot]["error"]
        raise PlanSkipped(
            MSG_PLAN_NOT_BUILT.format(slot=slot, count=count, spec=spec, name=name, why=why),
            record if str(why).startswith(NOT_BUILT_PAST) else {**record, "declined": why},
        )
    said = []
    defect = _defect(engine, name)
    if defect is not None:
        record["known_defect"] = {"signature": defect.signature, "reason": defect.reason}
    if slot == slots - 1 and count > slots:
        said.append(
            MSG_PLANS_CUT.format(count=count, spec=spec, first=slots, last=count - 1, slots=slots)
        )
    return with_plan(engine, slot), record, said


def _defect(engine: Engine, name: str | None) -> Any:
    """The cuDNN defect declared for the plan's engine on the GPU it was built on
    (``cudnn.DEFECTS``), if any."""
    from .cudnn import defect_of

    capability = engine.details.get("compute_capability")
    if name is None or not isinstance(capability, tuple):
        return None
    return defect_of(engine.spec.name, name, capability)
