"""foreign-stream: the engine is handed a stream made in another context than its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..messages import CONTEXT_MISMATCH
from .base import HAZARD, KnownFailure, Run, Scenario, State
from .torch_first import allocate_with_torch

if TYPE_CHECKING:
    from ..backends.base import ExecResult

#: Where the recipe keeps the stream it made, in ``State.kept``.
STREAM = "foreign_stream"


def torch_then_a_foreign_stream(state: State) -> None:
    from ..cuda import driver

    allocate_with_torch(state)
    primary = driver.current()
    driver.create_context(state.engine_device)  # as pycuda code makes one, and its stream there
    state.kept[STREAM] = driver.create_stream()
    driver.set_current(primary)
    state.steps.append(
        f"cuCtxCreate on device {state.engine_device} and a stream made there; the primary "
        "context made current again"
    )


def on_the_foreign_stream(run: Run) -> ExecResult:
    """The run enqueued on the other context's stream, which is then synchronised (the
    caller's stream: what synchronising it returned is part of the result)."""
    from ..cuda import driver

    stream = run.state.kept[STREAM]
    result = run.go(stream=stream)
    synced = driver.api().cuStreamSynchronize(stream)[0]
    if int(synced) != 0:
        result.errors.append(f"cuStreamSynchronize returned {driver.result_name(synced)}")
    return result


SCENARIO = Scenario(
    name="foreign-stream",
    kind=HAZARD,
    expected=(
        "known failure CUDA_ERROR_INVALID_HANDLE, output never written: a stream of another "
        "context is handed to the engine (NVIDIA/TensorRT#4191, #4518, cupy/cupy#4618); passes "
        "with trtctx_fix_context (the engine's own stream)"
    ),
    stands_for=("NVIDIA/TensorRT#4191", "NVIDIA/TensorRT#4518", "cupy/cupy#4618"),
    recipe=torch_then_a_foreign_stream,
    first_call="torch-first, then a stream made in a context of its own",
    built_in="primary context",
    run_from="on that stream, while the primary context is current",
    run=on_the_foreign_stream,
    known_failure=KnownFailure(
        CONTEXT_MISMATCH,
        "the engine is handed a stream of another context (NVIDIA/TensorRT#4191, #4518)",
    ),
    cause=(
        "The engine was handed a stream made in another context than its own (as pycuda code "
        "makes one): a stream belongs to the context it was made in, and an engine enqueued on "
        "another context's stream fails (TensorRT: 'invalid resource handle'). Fix: make the "
        "stream in the engine's context (torch.cuda.Stream() under torch's), or let the engine "
        "use its own (trtctx_fix_context)."
    ),
    every_test_fresh=True,
)
