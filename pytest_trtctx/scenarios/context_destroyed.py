"""context-destroyed: the engine's context is destroyed while it holds kernels and memory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import OrderError
from ..messages import CONTEXT_GONE
from .base import HAZARD, KnownFailure, Run, Scenario, State
from .torch_first import allocate_with_torch

if TYPE_CHECKING:
    from ..backends.base import ExecResult


#: Where the context the process's engines share is kept (``State.kept``) until a run destroys it.
SHARED = "context of their own"


@contextlib.contextmanager
def in_a_context_of_their_own(state: State) -> Iterator[None]:
    """Engines built in a context of their own (cuCtxCreate, after torch's first call), which
    every engine this process builds shares until a run destroys it; the next build then makes
    another. Not one context per engine: the driver serialises making and destroying contexts
    machine-wide, and each holds device memory while it lives (docs/isolation.md, "What a
    context costs"), so a context per engine made this scenario the slowest of the matrix."""
    from ..cuda import driver

    shared = state.kept.get(SHARED)
    if shared is None:
        state.kept[SHARED] = driver.create_context(state.engine_device)  # pushed: current
    else:
        driver.push(shared)
    try:
        yield
    finally:
        driver.pop()


def after_its_context_was_destroyed(run: Run) -> ExecResult:
    """What a library that owns the engine's context does underneath it (pycuda's
    context.detach(), a cleanup at exit): the context is destroyed, then the engine runs at once.
    The engine is of the live shared context: the runtime never hands out one whose context an
    earlier run destroyed (a launch of one crashed the process). The destroy is told to the
    runtime, which marks every engine of that context (``Run.context_lost``); the next build
    makes another."""
    from ..cuda import driver

    engine, kept = run.engine, run.state.kept
    if engine.details.get("context_destroyed"):  # a test that runs one engine twice
        raise OrderError(
            "context-destroyed: this engine's context was destroyed by an earlier run; a launch "
            "of it would use freed driver state (it crashed the process on a GPU): build "
            "another (trtctx.build) for each run"
        )
    shared = kept.get(SHARED)
    if shared is None or int(shared) != int(engine.context):
        raise OrderError(
            "context-destroyed runs engines built by the runtime in the context they share "
            f"(trtctx.build, trtctx.check_conv); this one was built in "
            f"{engine.built_in.describe()}"
        )
    driver.destroy_context(shared)
    del kept[SHARED]  # the next build makes another
    if run.context_lost is not None:
        run.context_lost(shared)
    engine.details["context_destroyed"] = True
    return run.go()


SCENARIO = Scenario(
    name="context-destroyed",
    kind=HAZARD,
    expected=(
        "known failure CUDA_ERROR_INVALID_HANDLE: the engine's context was destroyed while it "
        "held kernels and memory there (NVIDIA/TensorRT#2052, inducer/pycuda#460); the fix is to "
        "keep the context alive for the engine's lifetime (trtctx_fix_context)"
    ),
    stands_for=("NVIDIA/TensorRT#2052", "inducer/pycuda#460"),
    recipe=allocate_with_torch,
    first_call="torch-first; engines built in a context of their own",
    built_in="a context of their own",
    run_from="after its context was destroyed",
    run=after_its_context_was_destroyed,
    build_in=in_a_context_of_their_own,
    known_failure=KnownFailure(
        CONTEXT_GONE, "the engine's context was destroyed underneath it (NVIDIA/TensorRT#2052)"
    ),
    cause=(
        "The engine's context was destroyed while the engine still held kernels and memory "
        "there (a library's cleanup, pycuda's context.detach()): nothing of it can run again. "
        "Fix: keep the context alive for the engine's lifetime (trtctx_fix_context keeps it)."
    ),
    every_test_fresh=True,
    # Each canary makes and destroys a context, which the driver serialises machine-wide: with
    # one hardware queue a context instead of eight, both are several times faster, and the job
    # that runs every hazard is bounded by them (docs/isolation.md, "What a context costs"). A
    # launch into a destroyed context fails the same way whatever its queues. Opt-in
    # (--trtctx-fast-contexts): a user's streams in these processes would share one queue too.
    speed_environment={"CUDA_DEVICE_MAX_CONNECTIONS": "1"},
)
