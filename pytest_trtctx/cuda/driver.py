"""A thin, checked layer over cuda-python's driver API (``cuda.bindings.driver``).

Imported only inside tests and workers, never by the plugin at load time. Every call goes through
:func:`check`, which turns a non-success result into :class:`CudaError` carrying the driver's own
result name (``CUDA_ERROR_INVALID_HANDLE``), the string failure signatures match on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..errors import CudaError, NoCudaDriver

_lock = threading.Lock()
_initialised = False


def api() -> Any:
    """The ``cuda.bindings.driver`` module (imported on first use)."""
    try:
        from cuda.bindings import driver
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise NoCudaDriver(f"cuda-python is not installed ({exc})") from exc
    return driver


def result_name(err: Any) -> str:
    """The driver's name for a result (``CUDA_ERROR_INVALID_HANDLE``). The bindings' enum names
    are the driver's own, and reading them needs no driver; a code the bindings do not know is
    asked of the driver, and shown as ``CUresult(n)`` where that fails too."""
    drv = api()
    try:
        return str(drv.CUresult(int(err)).name)
    except ValueError:
        pass
    try:
        rc, name = drv.cuGetErrorName(int(err))
    except Exception:  # no driver library: nothing more to learn
        return f"CUresult({int(err)})"
    if int(rc) == 0 and name:
        return str(name.decode() if isinstance(name, bytes) else name)
    return f"CUresult({int(err)})"


def check(call: str, result: Any) -> Any:
    """Unpack a cuda-python result tuple, raising CudaError on failure."""
    if isinstance(result, tuple):
        err, *values = result
    else:
        err, values = result, []
    if int(err) != 0:
        raise CudaError(call, result_name(err))
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def init() -> None:
    """``cuInit(0)``, once. Raises NoCudaDriver when there is no driver or no device."""
    global _initialised
    with _lock:
        if _initialised:
            return
        try:
            drv = api()
            err = drv.cuInit(0)[0]
        except Exception as exc:  # DynamicLibNotFoundError and friends: no libcuda
            if isinstance(exc, NoCudaDriver):
                raise
            raise NoCudaDriver(f"cuInit failed: {type(exc).__name__}: {exc}") from exc
        if int(err) != 0:
            raise NoCudaDriver(f"cuInit(0) returned {result_name(err)}")
        _initialised = True


def device(index: int) -> Any:
    init()
    return check("cuDeviceGet", api().cuDeviceGet(index))


def device_count() -> int:
    init()
    return int(check("cuDeviceGetCount", api().cuDeviceGetCount()))


def compute_capability(index: int) -> tuple[int, int]:
    drv = api()
    dev = device(index)
    attr = drv.CUdevice_attribute
    major = check(
        "cuDeviceGetAttribute",
        drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev),
    )
    minor = check(
        "cuDeviceGetAttribute",
        drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev),
    )
    return int(major), int(minor)


def current() -> Any:
    """The context current on this thread (a CUcontext; ``int()`` of it is 0 for none)."""
    init()
    return check("cuCtxGetCurrent", api().cuCtxGetCurrent())


def context_id(ctx: Any) -> int:
    """``ctx``'s unique ID (cuCtxGetId): unlike its handle value, never reused in a process by a
    context made after ``ctx`` was destroyed."""
    return int(check("cuCtxGetId", api().cuCtxGetId(ctx)))


def set_current(ctx: Any) -> None:
    check("cuCtxSetCurrent", api().cuCtxSetCurrent(ctx))


def push(ctx: Any) -> None:
    check("cuCtxPushCurrent", api().cuCtxPushCurrent(ctx))


def pop() -> Any:
    return check("cuCtxPopCurrent", api().cuCtxPopCurrent())


def retain_primary(index: int) -> Any:
    """Retain device ``index``'s primary context, as the CUDA runtime does on first use."""
    return check("cuDevicePrimaryCtxRetain", api().cuDevicePrimaryCtxRetain(device(index)))


def primary_if_active(index: int) -> int:
    """The primary context's handle as an int, or 0 when it is not active.

    Asking must not create it: an inactive primary context is reported as 0, never retained.
    """
    drv = api()
    dev = device(index)
    _flags, active = check("cuDevicePrimaryCtxGetState", drv.cuDevicePrimaryCtxGetState(dev))
    if not active:
        return 0
    ctx = check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(dev))
    check("cuDevicePrimaryCtxRelease", drv.cuDevicePrimaryCtxRelease(dev))
    return int(ctx)


def create_context(index: int, flags: int = 0) -> Any:
    """``cuCtxCreate`` on device ``index`` with ``flags`` (``CU_CTX_*``); the new context becomes
    current (as pycuda does)."""
    drv = api()
    dev = device(index)
    try:  # cuda-bindings 13: cuCtxCreate(ctxCreateParams, flags, dev)
        result = drv.cuCtxCreate(None, flags, dev)
    except TypeError:  # cuda-bindings 12: cuCtxCreate(flags, dev)
        result = drv.cuCtxCreate(flags, dev)
    return check("cuCtxCreate", result)


def create_stream() -> Any:
    """A non-blocking stream of the context current on this thread."""
    return check("cuStreamCreate", api().cuStreamCreate(1))


def destroy_context(ctx: Any) -> None:
    check("cuCtxDestroy", api().cuCtxDestroy(ctx))


def context_device(ctx: Any) -> int:
    """The device ordinal of ``ctx`` (pushes it briefly)."""
    push(ctx)
    try:
        return int(check("cuCtxGetDevice", api().cuCtxGetDevice()))
    finally:
        pop()


@dataclass(frozen=True)
class ContextInfo:
    """Which context, on which device and thread, and whether it is the primary one."""

    handle: int
    device: int | None
    is_primary: bool
    thread: str

    def describe(self) -> str:
        if self.handle == 0:
            return f"no context (thread {self.thread})"
        kind = (
            f"the primary context of device {self.device}"
            if self.is_primary
            else f"a context of its own on device {self.device} (not the primary)"
        )
        return f"{kind}, 0x{self.handle:x}, thread {self.thread}"


def describe_current(device_hint: int) -> ContextInfo:
    """Describe the context current on this thread without changing anything."""
    ctx = current()
    handle = int(ctx)
    thread = threading.current_thread().name
    if handle == 0:
        return ContextInfo(0, None, False, thread)
    try:
        dev = int(check("cuCtxGetDevice", api().cuCtxGetDevice()))
    except CudaError:
        dev = device_hint
    return ContextInfo(handle, dev, handle == primary_if_active(dev), thread)
