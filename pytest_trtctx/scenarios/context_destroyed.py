"""context-destroyed: the engine's context is destroyed while it holds kernels and memory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..messages import CONTEXT_GONE
from .base import HAZARD, KnownFailure, Run, Scenario, State
from .torch_first import allocate_with_torch

if TYPE_CHECKING:
    from ..backends.base import Engine, ExecResult


@contextlib.contextmanager
def in_a_context_of_its_own(state: State) -> Iterator[None]:
    """Each engine built in a context of its own (cuCtxCreate, popped after the build), which
    its run destroys first."""
    from ..cuda import driver

    driver.create_context(state.engine_device)  # pushed: current for the build
    try:
        yield
    finally:
        driver.pop()


def after_its_context_was_destroyed(run: Run) -> ExecResult:
    """What a library that owns the engine's context does underneath it (pycuda's
    context.detach(), a cleanup at exit); the engine is not used again (the runtime forgets a
    prebuilt engine whose context is gone)."""
    from ..cuda import driver

    driver.destroy_context(run.engine.context)
    run.engine.details["context_destroyed"] = True
    return run.go()


def destroy_its_context(engine: Engine) -> None:
    """The context made for an engine that was never destroyed (its fixed run kept it) goes
    with the test that built it: a process meets one context per test, not one per test ever."""
    from ..cuda import driver

    driver.destroy_context(engine.context)


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
    first_call="torch-first; each engine built in a context of its own",
    built_in="a context of its own",
    run_from="after its context was destroyed",
    run=after_its_context_was_destroyed,
    build_in=in_a_context_of_its_own,
    retire=destroy_its_context,
    known_failure=KnownFailure(
        CONTEXT_GONE, "the engine's context was destroyed underneath it (NVIDIA/TensorRT#2052)"
    ),
    cause=(
        "The engine's context was destroyed while the engine still held kernels and memory "
        "there (a library's cleanup, pycuda's context.detach()): nothing of it can run again. "
        "Fix: keep the context alive for the engine's lifetime (trtctx_fix_context keeps it)."
    ),
    every_test_fresh=True,
)
