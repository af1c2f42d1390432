"""Fixtures of the TensorRT backend's tests."""

from __future__ import annotations

import pytest

from .support import MODULE, SPECS, weights_for


@pytest.fixture(scope="module")
def plans() -> dict[str, bytes]:
    """Every spec's plan, built once for the module's tests."""
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX is not installed")
    from pytest_trtctx.backends import tensorrt as T

    built = {}
    for spec in SPECS:
        weight, bias = weights_for(spec)
        built[spec.name] = T.build_plan(MODULE, spec, weight, bias)
    return built
