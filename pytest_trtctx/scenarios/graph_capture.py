"""graph-capture: the engine's run captured by torch.cuda.graph in torch's context, replayed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..messages import CONTEXT_MISMATCH
from .base import HAZARD, KnownFailure, Run, Scenario
from .driver_first import create_context

if TYPE_CHECKING:
    from ..backends.base import ExecResult


def captured(run: Run) -> ExecResult:
    """The engine's execution captured by ``torch.cuda.graph`` on a stream of torch's context,
    then the graph replayed, as a CUDA-graph deployment does; what torch raised or warned is
    part of the result."""
    import warnings

    import torch

    from ..backends.base import ExecResult

    device = run.engine.device
    graph = torch.cuda.CUDAGraph()
    capture = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
    result = ExecResult("not run", False, None, [], None)
    said: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            # relaxed: the backend's own context probes (cuCtxGetCurrent, the primary's
            # state) during the capture must not count as unsafe calls; the launch is what
            # the hazard is about, and capture modes do not change what it may launch.
            with torch.cuda.graph(graph, stream=capture, capture_error_mode="relaxed"):
                result = run.go(stream=capture.cuda_stream)
            graph.replay()
            torch.cuda.synchronize(device)
        except Exception as exc:  # an invalidated capture raises at its end
            said.append(f"capture: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    said += [f"capture: {w.message}" for w in seen]
    result.errors.extend(said)
    if said and result.signature is None:
        result.ok, result.signature = False, said[0]
    return result


SCENARIO = Scenario(
    name="graph-capture",
    kind=HAZARD,
    expected=(
        "known failure, output never written: the launch fails inside torch.cuda.graph's "
        "capture, the graph is empty and its replay writes nothing (ultralytics PR #26223, "
        "NVIDIA/TensorRT#2603); no push fixes it: build the engine in torch's context"
    ),
    stands_for=("ultralytics#26223", "NVIDIA/TensorRT#2603"),
    recipe=create_context,
    first_call="driver-first",
    built_in="created context",
    run_from="captured by torch.cuda.graph in the primary context, then replayed",
    run=captured,
    known_failure=KnownFailure(
        CONTEXT_MISMATCH,
        "captured by torch.cuda.graph in torch's context, the launch of the engine's kernel "
        "fails and the replayed graph writes nothing (ultralytics PR #26223, NVIDIA/TensorRT#2603)",
    ),
    cause=(
        "The engine's launch was captured by torch.cuda.graph on a stream of torch's context "
        "while the engine's kernels belong to another: the launch fails inside the capture, the "
        "graph holds nothing, and its replays never write the outputs. No push fixes a capture: "
        "build the engine in torch's context (torch-first), or run it outside the graph "
        "(trtctx_fix_context runs it uncaptured, its context pushed)."
    ),
)
