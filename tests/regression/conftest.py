"""The shipped regression suite, run from a clone (``./dev matrix``): the same rule as where it is
installed (``pytest_trtctx/suite/conftest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_trtctx.suite.conftest import skip_unless_ordered


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_unless_ordered(Path(__file__).parent, config, items)
