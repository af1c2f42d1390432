"""device-hop: the engine lives on device d+1; the thread that runs it binds device d first."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..messages import CONTEXT_MISMATCH
from .base import HAZARD, KnownFailure, Run, Scenario, State
from .multi_device import on_engine_device
from .runners import run_on_thread

if TYPE_CHECKING:
    from ..backends.base import ExecResult


def engine_device_current(state: State) -> None:
    from ..cuda import driver

    driver.set_current(driver.retain_primary(state.engine_device))
    state.steps.append(
        f"device {state.engine_device}'s primary context made current on the main thread (as "
        f"cudaSetDevice({state.engine_device}) does); the engine lives there"
    )


def _bound_to(device: int, go: Callable[[], ExecResult]) -> ExecResult:
    """``go`` on this thread after its first CUDA runtime call bound ``device`` (cudaSetDevice's
    default is device 0: the device's primary context made current)."""
    from ..cuda import driver

    driver.set_current(driver.retain_primary(device))
    return go()


def on_a_thread_bound_to_torch_device(run: Run, *, pushed: bool) -> ExecResult:
    """The run on a new thread whose first runtime call binds torch's device (with the fix:
    the engine's context pushed on that thread)."""
    return run_on_thread(lambda: _bound_to(run.state.torch_device, lambda: run.go(pushed=pushed)))


SCENARIO = Scenario(
    name="device-hop",
    kind=HAZARD,
    expected=(
        "needs 2 GPUs (skipped otherwise); expected known failure CUDA_ERROR_INVALID_HANDLE: the "
        "engine and its buffers live on device d+1, the thread that runs it binds device d first "
        "(microsoft/onnxruntime#16274); passes with trtctx_fix_context (its context pushed on "
        "that thread)"
    ),
    stands_for=("microsoft/onnxruntime#16274",),
    recipe=engine_device_current,
    first_call="device d+1's primary made current on the main thread",
    built_in="primary of d+1",
    run_from="on a new thread whose first runtime call binds device d (the default)",
    run=functools.partial(on_a_thread_bound_to_torch_device, pushed=False),
    fix=functools.partial(on_a_thread_bound_to_torch_device, pushed=True),
    build_in=on_engine_device,
    devices=2,
    known_failure=KnownFailure(
        CONTEXT_MISMATCH,
        "the executing thread binds device 0 while the engine lives on device 1 "
        "(microsoft/onnxruntime#16274); expected from the field, not yet seen on two GPUs",
    ),
    cause=(
        "The engine and its buffers live on another device than the one the executing thread "
        "bound: a new thread's first CUDA runtime call binds device 0 (cudaSetDevice's "
        "default), whose primary context then is current, not the engine's device's. Fix: "
        "cudaSetDevice (torch.cuda.set_device) to the engine's device on that thread, or push "
        "the engine's context there (trtctx_fix_context)."
    ),
    every_test_fresh=True,
)
