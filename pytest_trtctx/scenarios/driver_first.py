"""driver-first: a context created with cuCtxCreate (``import pycuda.autoinit``) before torch."""

from __future__ import annotations

from ..messages import CONTEXT_MISMATCH
from .base import ORDER, KnownFailure, Scenario, State


def create_context(state: State) -> None:
    from ..cuda import driver

    state.engine_context = driver.create_context(state.engine_device)
    state.steps.append(
        f"cuCtxCreate on device {state.engine_device} (as import pycuda.autoinit), made current"
    )


SCENARIO = Scenario(
    name="driver-first",
    kind=ORDER,
    expected=(
        "known failure CUDA_ERROR_INVALID_HANDLE, output never written: torch's first "
        "allocation makes the primary context current over the engine's own context "
        "(NVIDIA/TensorRT#4335, ultralytics#9092); passes with trtctx_fix_context"
    ),
    stands_for=("NVIDIA/TensorRT#4335", "ultralytics#9092"),
    recipe=create_context,
    first_call="cuCtxCreate (import pycuda.autoinit)",
    built_in="created context",
    run_from="same thread",
    known_failure=KnownFailure(
        CONTEXT_MISMATCH,
        "torch's first allocation makes the primary context current over the engine's "
        "cuCtxCreate context (NVIDIA/TensorRT#4335, ultralytics#9092)",
    ),
)
