"""How the items of an isolated run are cut into worker groups (:func:`groups`), each group a
process of its own: the rule that decides how many processes a run makes and in which order
they start. The :mod:`.scheduler` then runs the groups it is given."""

from __future__ import annotations

import pytest

from ..settings import plan
from ..settings.config import Settings
from .worker import Group

#: A scenario every test meets fresh gets a process per this many of its tests (rounded down:
#: each holds at least this many; at most one per worker), even where the run's share would
#: keep it whole: a process costs its recipe and prebuild (a context made: up to a second or
#: more when four start at once), about what this many of the matrix's tests take where they
#: make no context of their own. A scenario of many more (cuDNN's plans, eight a spec) is then
#: spread over the workers (docs/speed.md).
PART_TESTS = 150


def groups(items: list[pytest.Item], settings: Settings) -> list[Group]:
    """Split the items into worker groups, keeping each group in collection order.

    Under ``order`` each scenario's tests of one backend share one process. A scenario every
    test meets fresh (a hazard in how the engine runs does not wear off) may be cut: into as
    many parts as it takes for none to hold more than a worker's share of the run, and into one per
    :data:`PART_TESTS` of its tests, at most one per worker. Its outcomes are the same in any
    process that applied it, and a process costs its recipe (a context made, which the driver
    serialises machine-wide): a run of many scenarios of a few tests keeps each in one process
    and runs them side by side; a run of one such scenario, or of many tests each, spreads it
    over the workers. Those scenarios' groups go first: each of their tests meets its hazard
    afresh (a context, a fork, a poll), so they are the longest, and a long group started last
    is the run's tail (docs/speed.md, "The hazards job")."""
    if settings.isolate.value == "test":
        return [Group(plan.of(i).order, [i], trace=plan.of(i).trace.value) for i in items]
    # Each listed backend's tests of an order apart (--trtctx-backend=a,b): its outcomes are
    # those of a run of it alone, whatever another backend's engines do in a process.
    by_order: dict[tuple[str | None, str], list[pytest.Item]] = {}
    for item in items:
        planned = plan.of(item)
        by_order.setdefault((planned.order, planned.backend.value), []).append(item)
    workers = settings.workers.value
    share = max(1, -(-len(items) // workers))  # a worker's share of the run
    fresh_first: list[tuple[str | None, list[pytest.Item]]] = []
    rest: list[tuple[str | None, list[pytest.Item]]] = []
    for (order, _backend), group in by_order.items():
        fresh = order is not None and order in settings.registry
        fresh = fresh and settings.registry[str(order)].every_test_fresh
        wanted = max(-(-len(group) // share), len(group) // PART_TESTS)
        parts = max(1, min(workers, wanted)) if fresh else 1
        size = -(-len(group) // parts)
        cut = [(order, group[n : n + size]) for n in range(0, len(group), size)]
        (fresh_first if fresh else rest).extend(cut)
    return [
        Group(order, group, trace=any(plan.of(i).trace.value for i in group))
        for order, group in (*fresh_first, *rest)
    ]
