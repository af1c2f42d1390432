"""thread-hop: the engine, built in a created context on the main thread, runs on a new thread."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ..messages import CONTEXT_MISMATCH
from .base import ORDER, KnownFailure, Run, Scenario
from .driver_first import create_context
from .runners import run_on_thread

if TYPE_CHECKING:
    from ..backends.base import ExecResult


def on_a_new_thread(run: Run, *, pushed: bool) -> ExecResult:
    """The run on a new thread, which has no context until the runtime makes the primary one
    current there (with the fix: the engine's context pushed on that thread)."""
    return run_on_thread(lambda: run.go(pushed=pushed))


SCENARIO = Scenario(
    name="thread-hop",
    kind=ORDER,
    expected=(
        "known failure CUDA_ERROR_INVALID_HANDLE: the executing thread has no context, the runtime "
        "makes the primary current there (jkjung-avt/tensorrt_demos#68); passes with "
        "trtctx_fix_context"
    ),
    stands_for=("jkjung-avt/tensorrt_demos#68",),
    recipe=create_context,
    first_call="cuCtxCreate on the main thread",
    built_in="created context",
    run_from="a new thread",
    run=functools.partial(on_a_new_thread, pushed=False),
    fix=functools.partial(on_a_new_thread, pushed=True),
    known_failure=KnownFailure(
        CONTEXT_MISMATCH,
        "the executing thread has no context; the runtime makes the primary context current "
        "there (jkjung-avt/tensorrt_demos#68)",
    ),
)
