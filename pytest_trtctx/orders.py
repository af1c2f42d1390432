"""The CUDA init orders: recipes run first in a process where CUDA was never initialised.

Each recipe reproduces one way real programs end up with their CUDA contexts (see the README and
``docs/orders.md`` for the field reports behind each). A recipe only *initialises*; the test then
builds an engine, makes torch inputs and runs the engine, and the order decides on which thread the
run happens and which device torch works on.

=============  ===================================  ===================  ============
order          first CUDA call                      engine built in      run from
=============  ===================================  ===================  ============
torch-first    torch allocates on the device        primary context      same thread
trt-first      primary context retained, current    primary context      same thread
driver-first   cuCtxCreate (import pycuda.autoinit)  created context     same thread
thread-hop     cuCtxCreate on the main thread       created context      a new thread
multi-device   torch on device d                    primary of d+1       torch on d
=============  ===================================  ===================  ============

The context hazards (:data:`~pytest_trtctx.names.HAZARDS`) are scenarios selected the same way;
each has a recipe here and a way of running the engine (:mod:`.runtime`):

=================  ==================================  ======================================
hazard             recipe                              the run
=================  ==================================  ======================================
foreign-stream     torch-first, then a stream made in   on that stream, while the primary
                   a context of its own                 context is current
graph-capture      driver-first                         captured by torch.cuda.graph in the
                                                        primary context, then replayed
context-destroyed  torch-first; each engine built in    after its context was destroyed
                   a context of its own
fork-after-init    cuInit only (as a library's import   in a child process forked after it
                   does)
lazy-stall         CUDA_MODULE_LOADING=LAZY, then       its first launch while a kernel polls
                   torch-first; kernels from libraries  on another stream
device-hop         device d+1's primary made current    on a new thread whose first runtime
                   on the main thread; engine there     call binds device d (the default)
=================  ==================================  ======================================
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import NoCudaDriver, OrderError, TrtctxError
from .names import (
    CONTEXT_DESTROYED,
    DEVICE_HOP,
    DRIVER_FIRST,
    FOREIGN_STREAM,
    FORK_AFTER_INIT,
    GRAPH_CAPTURE,
    LAZY_STALL,
    MSG_NO_DRIVER,
    MSG_TOO_FEW_DEVICES,
    MULTI_DEVICE,
    SCENARIOS,
    STARTED_FROM,
    THREAD_HOP,
    TORCH_FIRST,
    TRT_FIRST,
    TWO_DEVICES,
)
from .status import describe_status

T = TypeVar("T")

#: What each order stands for and what to expect; the README and the summary quote these.
EXPECTED: dict[str, str] = {
    TORCH_FIRST: "pass: torch creates the primary context; the engine is built and run in it",
    TRT_FIRST: "pass: the runtime retains the primary context first; torch then shares it",
    DRIVER_FIRST: (
        "known failure CUDA_ERROR_INVALID_HANDLE, output never written: torch's first "
        "allocation makes the primary context current over the engine's own context "
        "(NVIDIA/TensorRT#4335, ultralytics#9092); passes with trtctx_fix_context"
    ),
    THREAD_HOP: (
        "known failure CUDA_ERROR_INVALID_HANDLE: the executing thread has no context, the runtime "
        "makes the primary current there (jkjung-avt/tensorrt_demos#68); passes with "
        "trtctx_fix_context"
    ),
    MULTI_DEVICE: (
        "needs 2 GPUs (skipped otherwise); known failure CUDA_ERROR_INVALID_HANDLE, output never "
        "written: torch's device is current while the engine lives on another "
        "(ultralytics#21300, mmdeploy#112); passes with trtctx_fix_context"
    ),
    # The hazards' outcomes as a GPU showed them (docs/orders.md has the run).
    FOREIGN_STREAM: (
        "known failure CUDA_ERROR_INVALID_HANDLE, output never written: a stream of another "
        "context is handed to the engine (NVIDIA/TensorRT#4191, #4518, cupy/cupy#4618); passes "
        "with trtctx_fix_context (the engine's own stream)"
    ),
    GRAPH_CAPTURE: (
        "known failure, output never written: the launch fails inside torch.cuda.graph's "
        "capture, the graph is empty and its replay writes nothing (ultralytics PR #26223, "
        "NVIDIA/TensorRT#2603); no push fixes it: build the engine in torch's context"
    ),
    CONTEXT_DESTROYED: (
        "known failure CUDA_ERROR_INVALID_HANDLE: the engine's context was destroyed while it "
        "held kernels and memory there (NVIDIA/TensorRT#2052, inducer/pycuda#460); the fix is to "
        "keep the context alive for the engine's lifetime (trtctx_fix_context)"
    ),
    FORK_AFTER_INIT: (
        "known failure CUDA_ERROR_NOT_INITIALIZED, output never written: the engine runs in a "
        "child forked after cuInit, where the driver refuses every call, and torch's own "
        "bad-fork guard saw no initialisation of torch's (NVIDIA/TensorRT#3636, "
        "pytorch/TensorRT#758, vllm-project/vllm#32611); fixed by running where CUDA was "
        "initialised (trtctx_fix_context), or forking before it / spawning"
    ),
    LAZY_STALL: (
        "known failure, the run stalled: under lazy loading (CUDA_MODULE_LOADING=LAZY, the "
        "driver's default) a kernel's first launch waits for the device to drain, here for a "
        "kernel polling on another stream (NVIDIA/nvbench#136); fixed by loading the engine's "
        "kernels before (trtctx_fix_context), or CUDA_MODULE_LOADING=EAGER"
    ),
    DEVICE_HOP: (
        "needs 2 GPUs (skipped otherwise); expected known failure CUDA_ERROR_INVALID_HANDLE: the "
        "engine and its buffers live on device d+1, the thread that runs it binds device d first "
        "(microsoft/onnxruntime#16274); passes with trtctx_fix_context (its context pushed on "
        "that thread)"
    ),
}


@dataclass
class OrderState:
    """What a recipe did in this process; the ``trtctx`` fixture reads it."""

    order: str
    device: int
    torch_device: int
    engine_device: int
    steps: list[str] = field(default_factory=list)
    engine_context: Any = None  # a context the recipe created for the engine, if any
    foreign_stream: Any = None  # foreign-stream: a stream of a context that is not the engine's
    skip_reason: str | None = None
    error: str | None = None
    #: Tests that used this state so far. Only the first meets the order as the recipe left it:
    #: once torch is initialised, a later torch allocation no longer switches contexts.
    uses: int = 0

    @property
    def applied(self) -> bool:
        """Whether the recipe ran to its end here (else the tests under it skip or fail)."""
        return self.skip_reason is None and self.error is None

    @property
    def hops_thread(self) -> bool:
        return self.order == THREAD_HOP

    @property
    def every_test_fresh(self) -> bool:
        """Whether every test meets this scenario as the first one does: a hazard in how the
        engine is run (a foreign stream, a context destroyed under it) does not wear off once
        torch has initialised, as an init order's switch does."""
        return self.order in (
            FOREIGN_STREAM,
            CONTEXT_DESTROYED,
            FORK_AFTER_INIT,
            LAZY_STALL,
            DEVICE_HOP,
        )


#: The order applied in this process (set once: by a worker at start, or at session start).
CURRENT: OrderState | None = None


def _torch_first(state: OrderState) -> None:
    import torch

    torch.empty(1, device=f"cuda:{state.torch_device}")
    torch.cuda.synchronize(state.torch_device)
    state.steps.append(f"torch allocated on cuda:{state.torch_device} (primary context)")


def _trt_first(state: OrderState) -> None:
    from . import driver

    driver.set_current(driver.retain_primary(state.engine_device))
    state.steps.append(
        f"the runtime retained device {state.engine_device}'s primary context and made it current"
    )


def _driver_first(state: OrderState) -> None:
    from . import driver

    state.engine_context = driver.create_context(state.engine_device)
    state.steps.append(
        f"cuCtxCreate on device {state.engine_device} (as import pycuda.autoinit), made current"
    )


def _multi_device(state: OrderState) -> None:
    from . import driver

    _torch_first(state)
    driver.set_current(driver.retain_primary(state.engine_device))
    state.steps.append(
        f"device {state.engine_device}'s primary context made current for the engine"
    )


def _foreign_stream(state: OrderState) -> None:
    from . import driver

    _torch_first(state)
    primary = driver.current()
    driver.create_context(state.engine_device)  # as pycuda code makes one, and its stream there
    state.foreign_stream = driver.create_stream()
    driver.set_current(primary)
    state.steps.append(
        f"cuCtxCreate on device {state.engine_device} and a stream made there; the primary "
        "context made current again"
    )


def _fork_after_init(state: OrderState) -> None:
    """cuInit alone, as a library does at import (cuda-python's users, NVRTC, a TensorRT build):
    torch's bad-fork guard cannot see it. apply() has run it already."""
    state.steps.append(
        "cuInit in this process, nothing else (as a library's import does); each engine then "
        "runs in a child forked after it"
    )


def _device_hop(state: OrderState) -> None:
    from . import driver

    driver.set_current(driver.retain_primary(state.engine_device))
    state.steps.append(
        f"device {state.engine_device}'s primary context made current on the main thread (as "
        f"cudaSetDevice({state.engine_device}) does); the engine lives there"
    )


_RECIPES: dict[str, Callable[[OrderState], None]] = {
    TORCH_FIRST: _torch_first,
    TRT_FIRST: _trt_first,
    DRIVER_FIRST: _driver_first,
    THREAD_HOP: _driver_first,
    MULTI_DEVICE: _multi_device,
    FOREIGN_STREAM: _foreign_stream,
    GRAPH_CAPTURE: _driver_first,
    CONTEXT_DESTROYED: _torch_first,
    FORK_AFTER_INIT: _fork_after_init,
    LAZY_STALL: _torch_first,  # after apply() set CUDA_MODULE_LOADING=LAZY
    DEVICE_HOP: _device_hop,
}


def apply(
    order: str,
    device: int,
    device_count: int | None = None,
    why_no_gpu: str = "",
    names: str = "",
    blocked: str = "",
) -> OrderState:
    """Run ``order``'s recipe in this process and remember it in :data:`CURRENT`.

    Never raises for a machine that cannot run the order: the state carries the skip reason, and
    every test that needs the order skips with it. ``blocked`` is such a reason known beforehand
    (this process initialised CUDA already): the recipe is not run at all.
    """
    global CURRENT
    if order not in SCENARIOS:
        raise OrderError(f"unknown order {order!r}")
    if CURRENT is not None:
        if CURRENT.order != order or CURRENT.device != device:
            raise OrderError(
                f"order {order} cannot be applied: {CURRENT.order} was already applied in this "
                "process, and CUDA cannot be un-initialised"
            )
        return CURRENT
    engine_device = device
    if order in TWO_DEVICES and device_count is not None:
        engine_device = (device + 1) % max(device_count, 1)
    state = OrderState(order, device, torch_device=device, engine_device=engine_device)
    CURRENT = state
    if blocked:
        state.skip_reason = blocked
        return state
    if why_no_gpu:
        state.skip_reason = MSG_NO_DRIVER.format(why=why_no_gpu)
        return state
    if order in TWO_DEVICES and (device_count or 0) < 2:
        state.skip_reason = MSG_TOO_FEW_DEVICES.format(
            order=order, count=device_count or 0, names=names or "none"
        )
        return state
    try:
        from . import driver

        if order == LAZY_STALL:  # read once, at cuInit: the scenario is lazy loading itself
            os.environ["CUDA_MODULE_LOADING"] = "LAZY"
        driver.init()
        if device >= driver.device_count():
            state.skip_reason = (
                f"device {device} does not exist: the driver reports {driver.device_count()}"
            )
            return state
        _RECIPES[order](state)
    except NoCudaDriver as exc:
        state.skip_reason = MSG_NO_DRIVER.format(why=exc)
    except ImportError as exc:
        state.skip_reason = f"order {order} needs {exc.name or exc}: not installed"
    except TrtctxError as exc:
        state.error = f"order {order} could not be applied: {exc}"
    return state


def reset_for_child() -> None:
    """Forget the parent's state in a freshly forked worker (the parent never applied one)."""
    global CURRENT
    CURRENT = None


def run_on_thread(fn: Callable[[], T], name: str = "trtctx-exec") -> T:
    """Run ``fn`` on a new thread and return its result (or raise its exception) here."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    setattr(thread, STARTED_FROM, sys._getframe(1))  # the tracer names the caller's line
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


#: How long a child forked to run an engine may take before it is killed (a child of a process
#: with threads can deadlock on a lock another thread held at the fork).
FORK_TIMEOUT_S = 60.0


def run_in_fork(fn: Callable[[], T], timeout: float = FORK_TIMEOUT_S) -> T | ForkFailure:
    """Run ``fn`` in a child forked from this process and return what it returned (pickled back),
    as a program that forks its workers after initialising CUDA does. The child never returns
    into pytest: it reports and leaves with os._exit. Where it raises, dies or does not answer
    in ``timeout`` seconds, a :class:`ForkFailure` says so (the child is killed and reaped)."""
    import pickle
    import select
    import signal
    import warnings

    read, write = os.pipe()
    with warnings.catch_warnings():  # this fork is the scenario itself, not an accident
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: only fn, then out
        os.close(read)
        try:
            data = pickle.dumps(("value", fn()))
        except BaseException as exc:
            data = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
        with open(write, "wb") as out:
            out.write(data)
        os._exit(0)
    os.close(write)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    with open(read, "rb", buffering=0) as pipe:
        while (left := deadline - time.monotonic()) > 0 and select.select([pipe], [], [], left)[0]:
            chunk = pipe.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    timed_out = time.monotonic() >= deadline
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _pid, status = os.waitpid(pid, 0)
    if timed_out:
        return ForkFailure(f"the forked child did not answer in {timeout:.0f} s and was killed")
    if not chunks:
        return ForkFailure(f"the forked child {describe_status(status)} without an answer")
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "error":
        return ForkFailure(f"the forked child raised {value}")
    return value  # type: ignore[no-any-return]


@dataclass
class ForkFailure:
    """What :func:`run_in_fork` says when the child gave no result."""

    reason: str
