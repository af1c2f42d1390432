"""pushed-over-torch: a TensorRT wrapper's own context pushed around torch work that launches
kernels loaded before, under torch (torch-tensorrt's shape: engines and inductor's Triton kernels
in one process).

The engine under test stands for torch's kernel here: it is built (loaded) in the primary context
after torch's first call, as inductor's Triton kernels are at their first launch. The wrapper's
context is made with ``cuCtxCreate`` (pycuda's ``make_context``) and pushed around the wrapper's
run *and* the torch post-processing after it, so the kernel is launched while a context it was
not loaded into is current. The fix pushes the wrapper's context around the wrapper's own engine
alone: torch's work runs in torch's context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..messages import CONTEXT_MISMATCH
from .base import HAZARD, KnownFailure, Run, Scenario, State
from .torch_first import allocate_with_torch

if TYPE_CHECKING:
    from ..backends.base import ExecResult

#: Where the recipe keeps the wrapper's context, in ``State.kept``.
WRAPPER_CONTEXT = "wrapper_context"


def torch_then_a_wrapper_context(state: State) -> None:
    from ..cuda import driver

    allocate_with_torch(state)
    state.kept[WRAPPER_CONTEXT] = driver.create_context(state.engine_device)
    driver.pop()  # cuCtxCreate pushed it; the wrapper pushes it around its own work only
    state.steps.append(
        f"cuCtxCreate on device {state.engine_device} (a TensorRT wrapper's context, as pycuda's "
        "make_context), popped: the primary context current again"
    )


def under_the_wrapper_context(run: Run) -> ExecResult:
    """The run while the wrapper's context is pushed on this thread (its ``ctx.push()`` around
    the torch post-processing), popped after."""
    from ..cuda import driver

    driver.push(run.state.kept[WRAPPER_CONTEXT])
    try:
        return run.go()
    finally:
        driver.pop()


def in_torchs_context(run: Run) -> ExecResult:
    """The fix: the wrapper pops its context before torch's work, which runs in the context
    current on the test's thread (torch's primary, where the kernel was loaded)."""
    return run.go()


SCENARIO = Scenario(
    name="pushed-over-torch",
    kind=HAZARD,
    expected=(
        "known failure, output never written: a kernel loaded under torch runs while another "
        "context is pushed over torch's (NVIDIA/flashdreams#424: Triton kernels fail with "
        "'invalid resource handle' after a library left its context current; "
        "openmm/openmm-torch#78); the reference backend says CUDA_ERROR_INVALID_HANDLE, Triton "
        "'invalid resource handle', cuDNN 'cudnnSetStream failed'; passes with "
        "trtctx_fix_context (torch's work run in torch's context)"
    ),
    stands_for=("NVIDIA/flashdreams#424", "openmm/openmm-torch#78"),
    recipe=torch_then_a_wrapper_context,
    first_call="torch-first, then cuCtxCreate for a wrapper (popped)",
    built_in="primary context (loaded under torch)",
    run_from="same thread, the wrapper's context pushed",
    run=under_the_wrapper_context,
    fix=in_torchs_context,
    known_failure=KnownFailure(
        CONTEXT_MISMATCH,
        "a kernel loaded in torch's context runs while another context is pushed over it "
        "(NVIDIA/flashdreams#424, openmm/openmm-torch#78)",
    ),
    cause=(
        "Work loaded under torch (an inductor Triton kernel, a cuDNN handle, torch's own work) "
        "ran while another context was pushed on the thread (a TensorRT wrapper's ctx.push() "
        "around torch post-processing, a library that left its context current): a loaded "
        "kernel belongs to the context it was loaded in, and a launch in another fails (Triton: "
        "'invalid resource handle'; cuDNN refuses the other context's stream: 'cudnnSetStream "
        "failed'). Fix: push the wrapper's context around the wrapper's own engine only and pop "
        "it before torch's work (trtctx_fix_context), or restore torch's context after a "
        "library call that changes it."
    ),
    every_test_fresh=True,
)
