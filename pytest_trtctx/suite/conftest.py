"""The regression suite runs only under orders chosen on purpose.

Collected without an order (``pytest`` on a tree that holds it), its tests are skipped with the
command that runs them, so that a plain run never initialises CUDA in the pytest process.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_trtctx.settings.config import settings_of

HOW = (
    "the regression suite runs under explicit orders: "
    "pytest --pyargs pytest_trtctx.suite --trtctx-order=all"
)


def skip_unless_ordered(here: Path, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the items of the suite in folder ``here`` when no order was selected."""
    if settings_of(config).active:
        return
    skip = pytest.mark.skip(reason=HOW)
    for item in items:
        if Path(item.path).parent == here:
            item.add_marker(skip)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_unless_ordered(Path(__file__).parent, config, items)
