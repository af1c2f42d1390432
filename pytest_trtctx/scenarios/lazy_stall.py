"""lazy-stall: under lazy loading an engine's first launch waits for a kernel polling elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..messages import LAZY_LOADING_STALL, MSG_LAZY_STALL, MSG_LAZY_STALL_GIL
from .base import HAZARD, KnownFailure, Run, Scenario, State
from .torch_first import allocate_with_torch

if TYPE_CHECKING:
    from ..backends.base import Backend, ExecResult

#: When the poller is released: a run still in its launch then was stalled. A stalled launch
#: never returns before the release, whatever the bound; an unstalled run returns in the time of
#: its kernel (milliseconds for the matrix's convolutions), so the bound is a small multiple of
#: that, not a guess at how long a stall lasts (docs/orders.md has the durations it rests on).
POLL_RELEASE_S = 0.1


def poller_cannot_release(backend: Backend) -> str | None:
    """The poller is released by a Python thread: a backend whose launch keeps the GIL while
    the driver makes it wait would deadlock, not stall (cuDNN's, on a GPU)."""
    if backend.launch_holds_gil:
        return MSG_LAZY_STALL_GIL.format(backend=backend.name)
    return None


def kernels_from_libraries(backend: Backend, state: State) -> None:
    """The reference backend's kernels come from a library (cuLibraryLoadData), which lazy
    loading loads at a kernel's first launch, as TensorRT's own kernel libraries are."""
    from ..backends.cuda_ref import CudaReferenceBackend

    if isinstance(backend, CudaReferenceBackend):
        backend.load_as_library = True


def beside_a_polling_kernel(run: Run) -> ExecResult:
    return _beside_a_polling_kernel(run, run.go)


def preloaded_then_beside_it(run: Run) -> ExecResult:
    """The fix: the engine's kernels loaded before the poller starts, as
    CUDA_MODULE_LOADING=EAGER does (TensorRT loads its kernels its own way: only the reference
    backend's are preloaded)."""
    from ..backends.cuda_ref import CudaReferenceBackend

    if isinstance(run.backend, CudaReferenceBackend):
        with run.engine_context():
            run.backend.preload(run.engine)
    return _beside_a_polling_kernel(run, lambda: run.go(pushed=True))


def _beside_a_polling_kernel(run: Run, go: Callable[[], ExecResult]) -> ExecResult:
    """The engine's run while a kernel polls a host-mapped flag on a stream of its own (a
    persistent kernel, a producer waiting for data); a host thread sets the flag after
    :data:`POLL_RELEASE_S`. Under lazy loading the first launch of a kernel not loaded yet waits
    for the device to drain, so the run returns only once the flag is set: it is named a stall
    (bounded here, where a program's poller might never be released)."""
    import ctypes
    import threading
    import time

    import pytest

    from ..backends.cuda_ref import CudaReferenceBackend
    from ..backends.kernels import POLL_KERNEL
    from ..cuda import driver

    backend = run.backend
    why = poller_cannot_release(backend)
    if why is not None:  # an engine built before the refusal was asked (Scenario.refuses)
        pytest.skip(why)
    drv, check = driver.api(), driver.check
    # The poller comes from the reference backend's module, whichever backend runs engines.
    poller = (
        backend
        if isinstance(backend, CudaReferenceBackend)
        else CudaReferenceBackend(run.state.engine_device, run.cache_dir)
    )
    poll = poller.function(POLL_KERNEL)
    host = check("cuMemHostAlloc", drv.cuMemHostAlloc(4, drv.CU_MEMHOSTALLOC_DEVICEMAP))
    flag = ctypes.c_int.from_address(int(host))
    flag.value = 0
    stream = check("cuStreamCreate", drv.cuStreamCreate(1))  # non-blocking
    try:
        arg = ctypes.c_void_p(
            int(check("cuMemHostGetDevicePointer", drv.cuMemHostGetDevicePointer(host, 0)))
        )
        params = (ctypes.c_void_p * 1)(ctypes.addressof(arg))
        args = ctypes.addressof(params)
        launched = drv.cuLaunchKernel(poll, 1, 1, 1, 1, 1, 1, 0, stream, args, 0)
        check("cuLaunchKernel (the poller)", launched)
        released = threading.Event()

        def release() -> None:
            flag.value = 1
            released.set()

        timer = threading.Timer(POLL_RELEASE_S, release)
        timer.start()
        began = time.monotonic()
        try:
            result = go()
        finally:
            waited, stalled = time.monotonic() - began, released.is_set()
            timer.cancel()
            flag.value = 1
            check("cuStreamSynchronize (the poller)", drv.cuStreamSynchronize(stream))
    finally:
        drv.cuStreamDestroy(stream)
        drv.cuMemFreeHost(host)
    if stalled:
        result.ok = False
        result.signature = result.signature or MSG_LAZY_STALL
        result.errors.append(
            f"{MSG_LAZY_STALL}: the run returned after {waited:.2f} s, only once the "
            f"kernel polling on another stream was released ({POLL_RELEASE_S:g} s); under "
            "lazy loading a kernel's first launch waits for the device to drain"
        )
    return result


SCENARIO = Scenario(
    name="lazy-stall",
    kind=HAZARD,
    expected=(
        "known failure, the run stalled: under lazy loading (CUDA_MODULE_LOADING=LAZY, the "
        "driver's default) a kernel's first launch waits for the device to drain, here for a "
        "kernel polling on another stream (NVIDIA/nvbench#136); fixed by loading the engine's "
        "kernels before (trtctx_fix_context), or CUDA_MODULE_LOADING=EAGER"
    ),
    stands_for=("NVIDIA/nvbench#136",),
    recipe=allocate_with_torch,
    first_call="CUDA_MODULE_LOADING=LAZY, then torch-first; kernels from libraries",
    built_in="primary context",
    run_from="its first launch while a kernel polls on another stream",
    run=beside_a_polling_kernel,
    fix=preloaded_then_beside_it,
    prepare=kernels_from_libraries,
    refuses=poller_cannot_release,
    environment={"CUDA_MODULE_LOADING": "LAZY"},  # read once, at cuInit
    known_failure=KnownFailure(
        LAZY_LOADING_STALL,
        "under lazy loading the kernel's first launch waits for a kernel polling on another "
        "stream (NVIDIA/nvbench#136)",
        # Triton loads its compiled kernel's module and function before the first launch (its
        # _init_handles, here at build): nothing is left to load lazily, and on a GPU none
        # of the matrix's 37 Triton engines stalled (docs/orders.md, "Vendor backends").
        except_backends=("triton",),
    ),
    cause=(
        "The engine's first launch waited while a kernel polled on another stream: under lazy "
        "loading (CUDA_MODULE_LOADING=LAZY, the driver's default since CUDA 12.2) the driver "
        "loads a kernel at its first launch and waits for the device to drain first, so a "
        "persistent kernel that waits for this engine's output hangs both. Fix: "
        "CUDA_MODULE_LOADING=EAGER before CUDA starts, or run each engine once before the "
        "persistent work starts (trtctx_fix_context loads its kernels first)."
    ),
    every_test_fresh=True,
)
