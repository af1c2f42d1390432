"""``--trtctx-prebuild``: a process's engines built once, right after its scenario's recipe.

Called once per process that applied a scenario: by a worker after it collected its tests, and by
the pytest process at the end of collection under ``--trtctx-isolate=none``; never from a
per-test hook. Each engine then meets the scenario as a fresh process's would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ..errors import BackendUnavailable
from ..scenarios.process import process_of
from ..scenarios.runtime import choose_backend, prebuild
from ..settings import plan
from ..settings.config import settings_of
from ..trace.recorder import labelled


def engine_of(item: pytest.Item) -> tuple[str, Any] | None:
    """The (planned backend, spec) of an item that builds the matrix's engine (it takes the
    ``trtctx`` runtime and a ``trtctx_spec``), else None."""
    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("trtctx_spec") if callspec is not None else None
    fixtures = getattr(item, "fixturenames", ())
    if spec is None or ("trtctx" not in fixtures and "trtctx_fix_context" not in fixtures):
        return None
    return plan.of(item).backend.value, spec


def prebuild_here(config: pytest.Config, items: Sequence[Any], order: str) -> int:
    """Build the engines of ``items`` that run under ``order``, with the backend each would run
    with here; how many were built (none where the scenario was not applied here)."""
    process = process_of(config)
    state = process.state
    if state is None or state.order != order or not state.applied:
        return 0
    wanted = []
    for item in items:
        found = engine_of(item) if plan.of(item).order == order else None
        if found is None:
            continue
        try:
            backend, _why = choose_backend(found[0], state)
        except BackendUnavailable:
            continue  # its test skips with the reason, as without prebuilding
        wanted.append((backend, found[1]))
    with labelled(f"the {order} order's prebuilt engines (--trtctx-prebuild)"):
        s = settings_of(config)
        return prebuild(process, wanted, s.cache_dir.value, s.cudnn_plans.value)


def was_prebuilt(item: pytest.Item) -> bool:
    """Whether the engine ``item`` builds was prebuilt here, for the backend it runs with."""
    found = engine_of(item)
    state = process_of(item.config).state
    if found is None or state is None:
        return False
    try:
        backend, _why = choose_backend(found[0], state)
    except BackendUnavailable:
        return False
    return (backend, found[1].name) in process_of(item.config).prebuilt
