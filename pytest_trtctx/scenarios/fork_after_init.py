"""fork-after-init: the engine runs in a child forked after cuInit (a library's import did it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..messages import CUDA_LOST_IN_FORK
from .base import HAZARD, KnownFailure, Run, Scenario, State
from .runners import ForkFailure, run_in_fork

if TYPE_CHECKING:
    from ..backends.base import ExecResult


def cuinit_only(state: State) -> None:
    """cuInit alone, as a library does at import (cuda-python's users, NVRTC, a TensorRT
    build): torch's bad-fork guard cannot see it. The driver was initialised before any recipe."""
    state.steps.append(
        "cuInit in this process, nothing else (as a library's import does); each engine then "
        "runs in a child forked after it"
    )


def in_a_forked_child(run: Run) -> ExecResult:
    return _forked_result(run_in_fork(run.go))


def _forked_result(forked: Any) -> ExecResult:
    """The run's result from a forked child, or a failed one that says why the child gave none."""
    from ..backends.base import ExecResult

    if isinstance(forked, ExecResult):
        return forked
    reason = forked.reason if isinstance(forked, ForkFailure) else repr(forked)
    return ExecResult("not run", False, None, [reason], reason)


SCENARIO = Scenario(
    name="fork-after-init",
    kind=HAZARD,
    expected=(
        "known failure CUDA_ERROR_NOT_INITIALIZED, output never written: the engine runs in a "
        "child forked after cuInit, where the driver refuses every call, and torch's own "
        "bad-fork guard saw no initialisation of torch's (NVIDIA/TensorRT#3636, "
        "pytorch/TensorRT#758, vllm-project/vllm#32611); fixed by running where CUDA was "
        "initialised (trtctx_fix_context), or forking before it / spawning"
    ),
    stands_for=("NVIDIA/TensorRT#3636", "pytorch/TensorRT#758", "vllm-project/vllm#32611"),
    recipe=cuinit_only,
    first_call="cuInit only (as a library's import does)",
    built_in="primary context",
    run_from="in a child process forked after it",
    run=in_a_forked_child,
    known_failure=KnownFailure(
        CUDA_LOST_IN_FORK,
        "run in a child forked after cuInit: the driver refuses every call there "
        "(NVIDIA/TensorRT#3636, vllm-project/vllm#32611)",
    ),
    cause=(
        "The engine ran in a process forked after CUDA was initialised (here only cuInit, as a "
        "library's import does): a forked child cannot use CUDA, every driver call in it "
        "returns CUDA_ERROR_NOT_INITIALIZED, and torch's own guard only knows of torch's "
        "initialisation. Fix: fork before any CUDA call, or start workers with spawn "
        "(multiprocessing.get_context('spawn')); trtctx_fix_context runs the engine unforked."
    ),
    every_test_fresh=True,
)
