"""The context regression suite: every init order (and context hazard) times the engine matrix.

Expected outcomes are the truth table of ``docs/orders.md``, declared by each scenario in its own
module (``pytest_trtctx/scenarios/``) and held here as canaries. Under driver-first and thread-hop
the engine's kernels live in a context that is not current when they run: the launch fails with
``CUDA_ERROR_INVALID_HANDLE`` (TensorRT: "invalid resource handle", ``Error Code 1: Cask``) and
the output is never written. Those are known failures: they pass while the failure reproduces and
fail loudly the day it stops. ``test_conv_fixed`` applies the
known fix (push the engine's context around execution) and must pass under every order.

Run it: ``pytest --pyargs pytest_trtctx.suite --trtctx-order=all`` (from a clone:
``./dev matrix``); the context hazards with ``--trtctx-order=hazards``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from pytest_trtctx.checks.outcomes import BACKEND_PROPERTY

if TYPE_CHECKING:
    from pytest_trtctx.checks.outputs import Outputs
    from pytest_trtctx.engines.spec import ConvSpec
    from pytest_trtctx.scenarios.runtime import Runtime


# Each scenario's expectation is declared in its own module (Scenario.known_failure: what a GPU
# showed, docs/orders.md); a declaration that stops holding fails its test: that is the canary.
@pytest.mark.trtctx_scenario_expected
@pytest.mark.trtctx_nonzero
def test_conv(trtctx: Runtime, trtctx_spec: ConvSpec) -> None:
    """Build the spec's engine in the order's context, feed it torch tensors, run it."""
    trtctx.check_conv(trtctx_spec)


@pytest.mark.trtctx_nonzero
@pytest.mark.trtctx_bitwise_stable(runs=2)
def test_conv_fixed(trtctx_fix_context: Runtime, trtctx_spec: ConvSpec) -> None:
    """With the engine's context pushed around execution every order passes, bit-stable."""
    trtctx_fix_context.check_conv(trtctx_spec)


def test_explore(trtctx_fix_context: Runtime, trtctx_explore: Callable[..., None]) -> None:
    """``--trtctx-explore=N``: N generated specs under the order, engine context pushed (so a
    failure is about the engine, not the order); a failure prints a minimal matrix entry."""
    trtctx_explore(trtctx_fix_context.check_conv)


def test_plan_builds(
    trtctx_spec: ConvSpec, trtctx_outputs: Outputs, request: pytest.FixtureRequest
) -> None:
    """TensorRT-RTX builds every spec's engine, with or without a GPU; the plan's bytes go to the
    report and baselines, so an upgrade that changes what the builder emits is seen."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    pytest.importorskip(
        "tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install 'pytest-trtctx[rtx]'"
    )
    from pytest_trtctx.backends.tensorrt import build_plan, plan_conv_layers
    from pytest_trtctx.scenarios.runtime import host_tensors

    _x, w, b = host_tensors(trtctx_spec)
    # What built it, for the report (as a user property: record_property warns under xunit2).
    request.node.user_properties.append((BACKEND_PROPERTY, "tensorrt_rtx"))
    plan = build_plan("tensorrt_rtx", trtctx_spec, w, b)
    assert plan_conv_layers(plan), "the plan holds no convolution"
    trtctx_outputs.add("plan", torch.frombuffer(bytearray(plan), dtype=torch.uint8))
