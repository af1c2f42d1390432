"""cuDNN plan slots: every execution plan cuDNN's heuristics offer for a spec runs as a test of its
own, with the plan's index in the test id and its engine's name in the test's record.

How many plans cuDNN offers for a spec is known only on a GPU, once the heuristics ran; the
pytest process collects while it must stay CUDA-clean (every worker is forked from it), and each
worker collects again after its order's recipe, which must give the same ids. So ids cannot
depend on what cuDNN says. A test that builds the matrix's engines (it takes ``trtctx_spec`` and
``trtctx`` or ``trtctx_fix_context``) with the ``cudnn`` backend is parametrised with plan slots
``plan0`` .. ``planN-1``, N from ``--trtctx-cudnn-plans`` (ini ``trtctx_cudnn_plans``). In the
test's own process, after the build, the slot picks the plan of its index
(:meth:`pytest_trtctx.scenarios.runtime.Runtime.build`): a slot past the plans offered skips with
``cuDNN offered K plans for SPEC``, a plan the frontend declined to build skips with its words,
and the last slot says so where more plans were offered than there are slots.

Considered and not taken: one test per spec that runs every plan (one verdict for dozens of
engines: a known failure of one engine, such as the one a GPU showed under driver-first,
would fail or hide the others, and no plan would have a record of its own); asking a GPU at
collection (a cuDNN call in the collecting process initialises CUDA before any order's recipe,
and ids would change with the machine and the library's heuristics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..backends.plans import BACKEND, slot_id
from ..errors import ConfigError
from . import backend_axis, plan
from .config import settings_of

if TYPE_CHECKING:
    pass

#: The fixture a slot is handed through (in the ``trtctx`` fixture's closure).
PARAM = "trtctx_plan"


def wants_slots(metafunc: pytest.Metafunc) -> bool:
    """Whether the test builds the matrix's engines with the cudnn backend."""
    names = metafunc.fixturenames
    if PARAM not in names or "trtctx_spec" not in names or backend_axis.multiplied(metafunc):
        return False  # several backends: the slots ride on the order (backend_axis.py)
    try:  # the backend as the test's plan settles it (marker, option, ini key)
        planned = plan.make(metafunc.definition, settings_of(metafunc.config))
    except ConfigError:
        return False  # the bad marker is reported once, naming the test, after collection
    return planned.backend.value == BACKEND


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if wants_slots(metafunc):
        count = settings_of(metafunc.config).cudnn_plans.value
        slots = [pytest.param(i, id=slot_id(i)) for i in range(count)]
        metafunc.parametrize(PARAM, slots, indirect=True)


@pytest.fixture
def trtctx_plan(request: pytest.FixtureRequest) -> int | None:
    """The cuDNN plan slot the test runs (None where the test has no slots: the graph's own
    choice, the first plan that built)."""
    slot = getattr(request, "param", None)
    return slot if isinstance(slot, int) else None
