"""The context regression suite: every init order (and context hazard) times the engine matrix.

Expected outcomes are the truth table of ``docs/orders.md`` written down as canaries. Under
driver-first and thread-hop the engine's kernels live in a context that is not current when they
run: the launch fails with ``CUDA_ERROR_INVALID_HANDLE`` (TensorRT: "invalid resource handle",
``Error Code 1: Cask``) and the output is never written. Those are declared known failures: they
pass while the failure reproduces and fail loudly the day it stops. ``test_conv_fixed`` applies the
known fix (push the engine's context around execution) and must pass under every order.

Run it: ``pytest --pyargs pytest_trtctx.suite --trtctx-order=all`` (from a clone:
``./dev matrix``); the context hazards with ``--trtctx-order=hazards``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from pytest_trtctx.names import (
    CONTEXT_DESTROYED,
    CONTEXT_GONE,
    CONTEXT_MISMATCH,
    CUDA_LOST_IN_FORK,
    DEVICE_HOP,
    DRIVER_FIRST,
    FOREIGN_STREAM,
    FORK_AFTER_INIT,
    GRAPH_CAPTURE,
    LAZY_LOADING_STALL,
    LAZY_STALL,
    MULTI_DEVICE,
    THREAD_HOP,
)
from pytest_trtctx.outcomes import BACKEND_PROPERTY

if TYPE_CHECKING:
    from pytest_trtctx.checks import Outputs
    from pytest_trtctx.runtime import Runtime
    from pytest_trtctx.spec import ConvSpec


@pytest.mark.trtctx_known_failure(
    DRIVER_FIRST,
    CONTEXT_MISMATCH,
    reason="torch's first allocation makes the primary context current over the engine's "
    "cuCtxCreate context (NVIDIA/TensorRT#4335, ultralytics#9092)",
)
@pytest.mark.trtctx_known_failure(
    THREAD_HOP,
    CONTEXT_MISMATCH,
    reason="the executing thread has no context; the runtime makes the primary context current "
    "there (jkjung-avt/tensorrt_demos#68)",
)
@pytest.mark.trtctx_known_failure(
    MULTI_DEVICE,
    CONTEXT_MISMATCH,
    reason="torch's device is current while the engine lives on another (ultralytics#21300): "
    "CUDA_ERROR_INVALID_HANDLE, output never written",
)
# The hazards' declarations are what a GPU showed for each (docs/orders.md); a declaration that
# stops holding fails its test: that is the canary.
@pytest.mark.trtctx_known_failure(
    FOREIGN_STREAM,
    CONTEXT_MISMATCH,
    reason="the engine is handed a stream of another context (NVIDIA/TensorRT#4191, #4518)",
)
@pytest.mark.trtctx_known_failure(
    GRAPH_CAPTURE,
    CONTEXT_MISMATCH,
    reason="captured by torch.cuda.graph in torch's context, the launch of the engine's kernel "
    "fails and the replayed graph writes nothing (ultralytics PR #26223, NVIDIA/TensorRT#2603)",
)
@pytest.mark.trtctx_known_failure(
    CONTEXT_DESTROYED,
    CONTEXT_GONE,
    reason="the engine's context was destroyed underneath it (NVIDIA/TensorRT#2052)",
)
@pytest.mark.trtctx_known_failure(
    FORK_AFTER_INIT,
    CUDA_LOST_IN_FORK,
    reason="run in a child forked after cuInit: the driver refuses every call there "
    "(NVIDIA/TensorRT#3636, vllm-project/vllm#32611)",
)
@pytest.mark.trtctx_known_failure(
    LAZY_STALL,
    LAZY_LOADING_STALL,
    reason="under lazy loading the kernel's first launch waits for a kernel polling on another "
    "stream (NVIDIA/nvbench#136)",
)
@pytest.mark.trtctx_known_failure(
    DEVICE_HOP,
    CONTEXT_MISMATCH,
    reason="the executing thread binds device 0 while the engine lives on device 1 "
    "(microsoft/onnxruntime#16274); expected from the field, not yet seen on two GPUs",
)
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
    from pytest_trtctx.runtime import host_tensors

    _x, w, b = host_tensors(trtctx_spec)
    # What built it, for the report (as a user property: record_property warns under xunit2).
    request.node.user_properties.append((BACKEND_PROPERTY, "tensorrt_rtx"))
    plan = build_plan("tensorrt_rtx", trtctx_spec, w, b)
    assert plan_conv_layers(plan), "the plan holds no convolution"
    trtctx_outputs.add("plan", torch.frombuffer(bytearray(plan), dtype=torch.uint8))
