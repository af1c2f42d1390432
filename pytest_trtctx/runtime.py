"""The object behind the ``trtctx`` fixture: build, feed and run engines under the applied order.

Every run goes through every check (backend error, execute's return value, sentinel, zeros,
NaN/Inf, a torch CPU reference with per-dtype tolerances); a failure raises :class:`CheckFailure`
with the diagnosis attached.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checks import CheckFailure, CheckResult, Outputs, output_checks, sentinel_fill
from .diagnosis import diagnose
from .names import (
    CONTEXT_DESTROYED,
    DEVICE_HOP,
    FOREIGN_STREAM,
    FORK_AFTER_INIT,
    GRAPH_CAPTURE,
    LAZY_STALL,
    MSG_LAZY_STALL,
    MULTI_DEVICE,
)

if TYPE_CHECKING:
    from .backends.base import Backend, Engine, ExecResult
    from .orders import OrderState
    from .spec import ConvSpec


def _dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


@functools.cache
def host_tensors(spec: ConvSpec) -> tuple[Any, Any, Any]:
    """Deterministic input, weight and bias for ``spec`` (CPU, rounded to spec.dtype).

    Seeded by the spec's name, so every backend, order and process sees the same numbers.
    """
    import torch

    gen = torch.Generator().manual_seed(zlib.crc32(spec.name.encode()))
    fan_in = spec.weight_shape[1] * spec.weight_shape[2] * spec.weight_shape[3]
    dt = _dtype(spec.dtype)
    x = torch.randn(spec.input_shape, generator=gen).to(dt)
    w = (torch.randn(spec.weight_shape, generator=gen) / fan_in**0.5).to(dt)
    b = (torch.randn(spec.out_channels, generator=gen) * 0.1).to(dt) if spec.bias else None
    return x, w, b


class Runtime:
    """Build and run engines under the order applied in this process."""

    def __init__(
        self,
        state: OrderState,
        backend_name: str,
        cache_dir: Path | None,
        outputs: Outputs,
    ) -> None:
        self.state = state
        self.order = state.order
        self.backend_name = backend_name
        self.cache_dir = cache_dir
        self.outputs = outputs
        #: Push the engine's context around execution (set by the trtctx_fix_context fixture).
        self.fix_context = False
        self._backend: Backend | None = None
        self._engines: list[Engine] = []
        #: Every message the backend reported while running (CUDA results, engine log errors).
        self.messages: list[str] = []
        #: The cuDNN plan slot the test runs, and how many slots its spec has (plan_slots.py).
        self.plan: int | None = None
        self.plan_slots = 0
        #: Which of its spec's plans the engine ran (index, how many, the engine's name), for
        #: the test's record; empty for a backend that builds one engine per spec.
        self.engine_record: dict[str, Any] = {}

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from .backends import create
            from .backends.cuda_ref import CudaReferenceBackend

            self._backend = create(self.backend_name, self.state.engine_device, self.cache_dir)
            if self.order == LAZY_STALL and isinstance(self._backend, CudaReferenceBackend):
                self._backend.load_as_library = True  # its kernels then load at first launch
        return self._backend

    # Data -----------------------------------------------------------------------------------
    def host_tensors(self, spec: ConvSpec) -> tuple[Any, Any, Any]:
        """Deterministic input, weight and bias for ``spec`` (CPU, rounded to spec.dtype)."""
        return host_tensors(spec)

    def reference(self, spec: ConvSpec) -> Any:
        """torch's CPU conv2d in float32 on the same (rounded) values."""
        import torch.nn.functional as F

        x, w, b = self.host_tensors(spec)
        return F.conv2d(
            x.float(),
            w.float(),
            None if b is None else b.float(),
            stride=spec.stride,
            padding=spec.padding,
            dilation=spec.dilation,
            groups=spec.groups,
        )

    # Engines --------------------------------------------------------------------------------
    def build(self, spec: ConvSpec) -> Engine:
        """An engine for ``spec``: the one built right after the order's recipe where engines are
        prebuilt (``--trtctx-prebuild``), else one built now (:meth:`build_now`); of a backend
        that builds several plans per spec, the plan of the test's slot (``plan_slots.pick``).
        A spec the backend refuses skips the test with the backend's reason."""
        import pytest

        from .errors import SpecRefused
        from .plan_slots import pick

        engine = PREBUILT.get((self.backend_name, spec.name))
        if engine is None:
            try:
                engine = self.build_now(spec)
            except SpecRefused as exc:
                pytest.skip(str(exc))
        engine, self.engine_record, said = pick(engine, self.plan, self.plan_slots)
        self.messages.extend(said)
        return engine

    def build_now(self, spec: ConvSpec) -> Engine:
        """Build an engine for ``spec`` in the context current on this thread (under multi-device:
        in the engine device's primary context).

        Under multi-device the engine's device is selected first (its primary context pushed
        around the build), as TensorRT's documentation asks before deserializing: torch's work
        on its own device makes that device current again, and an engine built then would land
        on torch's device and read the other device's tensors (an illegal memory access). The
        retained primary is not released: the order holds it for the whole process anyway.
        Under context-destroyed each engine is built in a context of its own (made with
        cuCtxCreate, popped after the build), which its run destroys first.
        """
        from . import driver

        _x, w, b = self.host_tensors(spec)
        select = self.state.order in (MULTI_DEVICE, DEVICE_HOP)
        own = self.state.order == CONTEXT_DESTROYED
        if select:
            driver.push(driver.retain_primary(self.state.engine_device))
        elif own:
            driver.create_context(self.state.engine_device)  # pushed: current for the build
        try:
            engine = self.backend.build(spec, w, b)
        finally:
            if select or own:
                driver.pop()
        self._engines.append(engine)
        return engine

    def make_input(self, spec: ConvSpec) -> Any:
        """The input as a torch CUDA tensor: torch's own allocation (it may switch contexts)."""
        x, _w, _b = self.host_tensors(spec)
        return x.to(f"cuda:{self.state.engine_device}")

    def run(self, engine: Engine, x: Any, name: str | None = None) -> Any:
        """Execute ``engine`` on ``x`` as the order prescribes, check everything, return y."""
        __tracebackhide__ = True  # a failure shows the test's line and the verdict
        import torch

        from . import driver
        from .orders import run_in_fork, run_on_thread

        spec = engine.spec
        y = torch.empty(spec.output_shape, dtype=_dtype(spec.dtype), device=f"cuda:{engine.device}")
        sentinel_fill(y)
        torch.cuda.synchronize(y.device)
        order = self.state.order
        if order == MULTI_DEVICE:
            torch.cuda.set_device(self.state.torch_device)
        backend, fixed = self.backend, self.fix_context
        stream = self.state.foreign_stream if order == FOREIGN_STREAM and not fixed else None
        if order == CONTEXT_DESTROYED and not fixed:
            self._destroy(engine)

        def go() -> ExecResult:
            if fixed:
                driver.push(engine.context)
            try:
                return backend.execute(engine, x, y, stream)
            finally:
                if fixed:
                    driver.pop()

        if order == GRAPH_CAPTURE and not fixed:
            result = self._captured(engine, x, y)
        elif order == FORK_AFTER_INIT and not fixed:
            result = _forked_result(run_in_fork(go))
        elif order == LAZY_STALL:
            result = self._beside_a_polling_kernel(engine, go)
        elif order == DEVICE_HOP:  # the new thread's first runtime call binds torch's device
            result = run_on_thread(functools.partial(_bound_to, self.state.torch_device, go))
        else:
            result = run_on_thread(go) if self.state.hops_thread else go()
        if stream is not None:  # the caller's stream: synchronise it, say what that returned
            synced = driver.api().cuStreamSynchronize(stream)[0]
            if int(synced) != 0:
                result.errors.append(f"cuStreamSynchronize returned {driver.result_name(synced)}")
        self.messages.extend(m for m in result.errors if m not in self.messages)
        self.outputs.add(name or spec.name, y)
        self.outputs.owned.add(id(y))
        results = [
            CheckResult(
                "backend",
                not result.errors,
                " | ".join(result.errors) or "no error reported",
                f"backend: {result.signature}" if result.errors else None,
            ),
            CheckResult(
                "execute",
                result.ok,
                f"returned {result.returned!r}",
                None if result.ok else f"execute: returned {result.returned}",
            ),
        ]
        results += output_checks(
            name or spec.name, y, owned=True, reference=self.reference(spec), dtype=spec.dtype
        )
        if not all(r.ok for r in results):
            raise CheckFailure(results, diagnose(self.state, engine, result, fixed))
        return y

    def _destroy(self, engine: Engine) -> None:
        """context-destroyed: what a library that owns the engine's context does underneath it
        (pycuda's context.detach(), a cleanup at exit). The engine is not used again."""
        from . import driver

        driver.destroy_context(engine.context)
        engine.details["context_destroyed"] = True
        # A plan's engine (backends.base.with_plan) is a copy sharing its engine's handle.
        for other in self._engines:
            if other.handle is engine.handle:
                other.details["context_destroyed"] = True
        for key, prebuilt in list(PREBUILT.items()):
            if prebuilt is engine or prebuilt.handle is engine.handle:
                del PREBUILT[key]

    def _captured(self, engine: Engine, x: Any, y: Any) -> ExecResult:
        """graph-capture: the engine's execution captured by ``torch.cuda.graph`` on a stream of
        torch's context, then the graph replayed, as a CUDA-graph deployment does; what torch
        raised or warned is part of the result."""
        import warnings

        import torch

        from .backends.base import ExecResult

        graph = torch.cuda.CUDAGraph()
        capture = torch.cuda.Stream(device=engine.device)  # type: ignore[no-untyped-call]
        result = ExecResult("not run", False, None, [], None)
        said: list[str] = []
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                # relaxed: the backend's own context probes (cuCtxGetCurrent, the primary's
                # state) during the capture must not count as unsafe calls; the launch is what
                # the hazard is about, and capture modes do not change what it may launch.
                with torch.cuda.graph(graph, stream=capture, capture_error_mode="relaxed"):
                    result = self.backend.execute(engine, x, y, capture.cuda_stream)
                graph.replay()
                torch.cuda.synchronize(engine.device)
            except Exception as exc:  # an invalidated capture raises at its end
                said.append(f"capture: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        said += [f"capture: {w.message}" for w in seen]
        result.errors.extend(said)
        if said and result.signature is None:
            result.ok, result.signature = False, said[0]
        return result

    def _beside_a_polling_kernel(self, engine: Engine, go: Callable[[], ExecResult]) -> ExecResult:
        """lazy-stall: the engine's run while a kernel polls a host-mapped flag on a stream of its
        own (a persistent kernel, a producer waiting for data); a host thread sets the flag after
        :data:`POLL_RELEASE_S`. Under lazy loading the first launch of a kernel not loaded yet
        waits for the device to drain, so the run returns only once the flag is set: it is
        named a stall (bounded here, where a program's poller might never be released). The fix
        loads the engine's kernel before the poller starts, as CUDA_MODULE_LOADING=EAGER does."""
        import ctypes
        import threading
        import time

        from . import driver
        from .backends.cuda_ref import CudaReferenceBackend
        from .kernels import POLL_KERNEL

        drv, check = driver.api(), driver.check
        backend = self.backend
        reference = backend if isinstance(backend, CudaReferenceBackend) else None
        if self.fix_context and reference is not None:  # TensorRT loads its kernels its own way
            driver.push(engine.context)
            try:
                reference.preload(engine)
            finally:
                driver.pop()
        # The poller comes from the reference backend's module, whichever backend runs engines.
        poller = reference or CudaReferenceBackend(self.state.engine_device, self.cache_dir)
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
            launched = drv.cuLaunchKernel(
                poll, 1, 1, 1, 1, 1, 1, 0, stream, ctypes.addressof(params), 0
            )
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

    def check_conv(self, spec: ConvSpec) -> Any:
        """Build, feed and run ``spec``'s engine: the regression suite's one step."""
        __tracebackhide__ = True  # a failure shows the test's line and the verdict
        engine = self.build(spec)
        x = self.make_input(spec)
        return self.run(engine, x)

    def close(self) -> None:
        engines, self._engines = self._engines, []
        for engine in engines:  # a destroyed context took its engine's memory with it
            if self._backend is not None and not engine.details.get("context_destroyed"):
                self._backend.close(engine)


#: Engines built right after the order's recipe, before any test (``--trtctx-prebuild``), by
#: (backend, spec name); they live as long as the process, whose order they met fresh.
PREBUILT: dict[tuple[str, str], Engine] = {}


def choose_backend(planned: str, state: OrderState) -> tuple[str, str]:
    """The backend that runs here for a test that plans ``planned``, and why;
    BackendUnavailable when an explicit one cannot run on the engine's device."""
    from . import backends, probe

    devices = probe.machine().devices
    engine_cc = next((d.cc for d in devices if d.index == state.engine_device), None)
    return backends.select(planned, engine_cc)


def prebuild(state: OrderState, wanted: list[tuple[str, ConvSpec]], cache_dir: Path | None) -> int:
    """Build the engine of every (backend, spec) in ``wanted`` now, in the context the order's
    recipe left current, before torch's first CUDA call of any test: each engine meets the order
    as a fresh process's would, at the cost of one process for the order. Returns how many were
    built; one that fails to build is left to its test, which builds it and fails as it would."""
    by_backend: dict[str, Runtime] = {}
    built = 0
    for backend, spec in wanted:
        if (backend, spec.name) in PREBUILT:
            continue
        runtime = by_backend.get(backend)
        if runtime is None:
            runtime = by_backend[backend] = Runtime(state, backend, cache_dir, Outputs())
        try:
            PREBUILT[(backend, spec.name)] = runtime.build_now(spec)
        except Exception:  # the test builds it again and reports the failure itself
            continue
        built += 1
    return built


#: When the lazy-stall scenario's poller is released: a run still in its launch then was stalled
#: (an unstalled run takes milliseconds).
POLL_RELEASE_S = 0.5


def _bound_to(device: int, go: Callable[[], ExecResult]) -> ExecResult:
    """``go`` on this thread after its first CUDA runtime call bound ``device`` (cudaSetDevice's
    default is device 0: the device's primary context made current)."""
    from . import driver

    driver.set_current(driver.retain_primary(device))
    return go()


def _forked_result(forked: Any) -> ExecResult:
    """The run's result from a forked child, or a failed one that says why the child gave none."""
    from .backends.base import ExecResult

    if isinstance(forked, ExecResult):
        return forked
    return ExecResult("not run", False, None, [forked.reason], forked.reason)
