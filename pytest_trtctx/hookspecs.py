"""The plugin's hooks, for a conftest.py or a plugin to implement."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .scenarios import Scenario


def pytest_trtctx_scenarios(config: pytest.Config) -> Iterable[Scenario]:
    """Scenarios to add to the shipped init orders and hazards (``pytest_trtctx.scenarios``).

    Called once, at configure time, before ``--trtctx-order`` is read: implement it in the
    rootdir's ``conftest.py`` or in a plugin (a conftest.py further down is loaded too late).
    A returned scenario is selected by its name, or by ``all`` (kind ``order``) or ``hazards``
    (kind ``hazard``), and runs, reports and diffs like the shipped ones. Its recipe must not
    run at import: it runs first in a fresh process where CUDA was never initialised.
    """
    raise NotImplementedError  # a hook specification: never called itself
