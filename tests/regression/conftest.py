"""The regression suite runs only under orders chosen on purpose.

``pytest`` alone (the plugin's own tests) collects it but skips it with the command to run it, so
a plain run never initialises CUDA in the pytest process.
"""

from __future__ import annotations

import pytest

from pytest_trtctx.config import settings_of

HOW = "the regression suite runs under explicit orders: pytest tests/regression --trtctx-order=all"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if settings_of(config).active:
        return
    skip = pytest.mark.skip(reason=HOW)
    for item in items:
        if "regression" in item.nodeid.split("::")[0]:
            item.add_marker(skip)
