"""The regression suite as it ships (``pytest_trtctx/suite/test_conv_matrix.py``), collected from
the clone: ``./dev matrix`` runs it here, ``pytest --pyargs pytest_trtctx.suite`` where the plugin
is installed. Same tests, same markers, same ids."""

from __future__ import annotations

from pytest_trtctx.suite.test_conv_matrix import (
    test_conv,
    test_conv_fixed,
    test_explore,
    test_plan_builds,
)

__all__ = ["test_conv", "test_conv_fixed", "test_explore", "test_plan_builds"]
