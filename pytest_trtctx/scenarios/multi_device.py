"""multi-device: torch works on device d while the engine lives on device d+1 (two GPUs)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..messages import CONTEXT_MISMATCH
from .base import ORDER, KnownFailure, Run, Scenario, State
from .torch_first import allocate_with_torch

if TYPE_CHECKING:
    from ..backends.base import ExecResult


def torch_then_engine_device(state: State) -> None:
    from ..cuda import driver

    allocate_with_torch(state)
    driver.set_current(driver.retain_primary(state.engine_device))
    state.steps.append(
        f"device {state.engine_device}'s primary context made current for the engine"
    )


@contextlib.contextmanager
def on_engine_device(state: State) -> Iterator[None]:
    """The engine's device selected around its build (its primary context pushed), as
    TensorRT's documentation asks before deserializing: torch's work on its own device makes
    that device current again, and an engine built then would land on torch's device. The
    retained primary is not released: the scenario holds it for the whole process anyway."""
    from ..cuda import driver

    driver.push(driver.retain_primary(state.engine_device))
    try:
        yield
    finally:
        driver.pop()


def on_torch_device(run: Run, *, pushed: bool) -> ExecResult:
    """The run with torch's device selected (with the fix: the engine's context pushed)."""
    import torch

    torch.cuda.set_device(run.state.torch_device)
    return run.go(pushed=pushed)


SCENARIO = Scenario(
    name="multi-device",
    kind=ORDER,
    expected=(
        "needs 2 GPUs (skipped otherwise); known failure CUDA_ERROR_INVALID_HANDLE, output never "
        "written: torch's device is current while the engine lives on another "
        "(ultralytics#21300, mmdeploy#112); passes with trtctx_fix_context"
    ),
    stands_for=("ultralytics#21300", "mmdeploy#112"),
    recipe=torch_then_engine_device,
    first_call="torch on device d",
    built_in="primary of d+1",
    run_from="torch on d",
    run=functools.partial(on_torch_device, pushed=False),
    fix=functools.partial(on_torch_device, pushed=True),
    build_in=on_engine_device,
    devices=2,
    known_failure=KnownFailure(
        CONTEXT_MISMATCH,
        "torch's device is current while the engine lives on another (ultralytics#21300): "
        "CUDA_ERROR_INVALID_HANDLE, output never written",
    ),
)
