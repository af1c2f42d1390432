"""The CUDA context current on a thread, and who owns a pointer, read without initialising CUDA.

The plugin watches a test's contexts from the outside: it must never be the one that loads the
driver or calls ``cuInit`` (that would change what the test sees). So this module speaks to
``libcuda`` through :mod:`ctypes` only, and only where the process already loaded it
(``RTLD_NOLOAD``); where CUDA was never initialised every answer is "nothing", and asking changes
nothing. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

CUDA_SUCCESS = 0
CUDA_ERROR_NOT_INITIALIZED = 3
#: ``CU_POINTER_ATTRIBUTE_CONTEXT``: the context a device pointer was allocated in.
POINTER_ATTRIBUTE_CONTEXT = 1

#: Errors that leave a context unusable ("sticky"): every later call in it returns them again,
#: so a process that met one cannot run another test.
STICKY = frozenset(
    {
        "CUDA_ERROR_ILLEGAL_ADDRESS",
        "CUDA_ERROR_LAUNCH_FAILED",
        "CUDA_ERROR_MISALIGNED_ADDRESS",
        "CUDA_ERROR_HARDWARE_STACK_ERROR",
        "CUDA_ERROR_ILLEGAL_INSTRUCTION",
        "CUDA_ERROR_INVALID_ADDRESS_SPACE",
        "CUDA_ERROR_INVALID_PC",
        "CUDA_ERROR_ASSERT",
        "CUDA_ERROR_ECC_UNCORRECTABLE",
        "CUDA_ERROR_LAUNCH_TIMEOUT",
        "CUDA_ERROR_CONTEXT_IS_DESTROYED",
    }
)
#: The words torch and TensorRT use for those errors in their exceptions and logs.
STICKY_TEXT = (
    "illegal memory access",
    "unspecified launch failure",
    "misaligned address",
    "illegal instruction",
    "device-side assert",
    "uncorrectable ECC",
    "CUDA_ERROR_ILLEGAL_ADDRESS",
    "CUDA_ERROR_LAUNCH_FAILED",
    "CUDA_ERROR_MISALIGNED_ADDRESS",
)


@dataclass(frozen=True)
class Snapshot:
    """The context current on one thread at one moment (``handle`` 0: none)."""

    handle: int
    device: int | None
    primary: bool
    thread: str


def _lib() -> ctypes.CDLL | None:
    """libcuda if this process loaded it and initialised it; None otherwise (nothing asked)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOLOAD)
    except OSError:
        return None
    ctx = ctypes.c_void_p()
    if lib.cuCtxGetCurrent(ctypes.byref(ctx)) == CUDA_ERROR_NOT_INITIALIZED:
        return None
    return lib


def error_name(lib: ctypes.CDLL, code: int) -> str:
    name = ctypes.c_char_p()
    if lib.cuGetErrorName(code, ctypes.byref(name)) == CUDA_SUCCESS and name.value:
        return name.value.decode()
    return f"CUresult({code})"


def _primary(lib: ctypes.CDLL, device: int) -> int:
    """Device ``device``'s primary context, or 0 when it is not active (never created here)."""
    dev = ctypes.c_int()
    if lib.cuDeviceGet(ctypes.byref(dev), device) != CUDA_SUCCESS:
        return 0
    flags, active = ctypes.c_uint(), ctypes.c_int()
    if lib.cuDevicePrimaryCtxGetState(dev, ctypes.byref(flags), ctypes.byref(active)):
        return 0
    if not active.value:
        return 0
    ctx = ctypes.c_void_p()
    if lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) != CUDA_SUCCESS:
        return 0
    lib.cuDevicePrimaryCtxRelease_v2(dev)
    return int(ctx.value or 0)


def current() -> Snapshot | None:
    """The context current on this thread; None where this process never initialised CUDA."""
    lib = _lib()
    if lib is None:
        return None
    thread = threading.current_thread().name
    ctx = ctypes.c_void_p()
    if lib.cuCtxGetCurrent(ctypes.byref(ctx)) != CUDA_SUCCESS or not ctx.value:
        return Snapshot(0, None, False, thread)
    dev = ctypes.c_int()
    device = dev.value if lib.cuCtxGetDevice(ctypes.byref(dev)) == CUDA_SUCCESS else None
    primary = device is not None and _primary(lib, device) == ctx.value
    return Snapshot(int(ctx.value), device, primary, thread)


def owner(pointer: int) -> int | None:
    """The context that allocated device memory at ``pointer`` (None when unknown)."""
    lib = _lib()
    if lib is None or not pointer:
        return None
    ctx = ctypes.c_void_p()
    rc = lib.cuPointerGetAttribute(
        ctypes.byref(ctx), POINTER_ATTRIBUTE_CONTEXT, ctypes.c_uint64(pointer)
    )
    return int(ctx.value or 0) if rc == CUDA_SUCCESS else None


def sticky_error() -> str | None:
    """A sticky error of the context current on this thread, by the driver's name; else None."""
    lib = _lib()
    if lib is None:
        return None
    ctx = ctypes.c_void_p()
    if lib.cuCtxGetCurrent(ctypes.byref(ctx)) != CUDA_SUCCESS or not ctx.value:
        return None
    rc = lib.cuCtxSynchronize()
    if rc == CUDA_SUCCESS:
        return None
    name = error_name(lib, rc)
    return name if name in STICKY else None


def sticky_in(text: str) -> str | None:
    """The first words in ``text`` that name a sticky error (a test's failure), else None."""
    for words in STICKY_TEXT:
        if words in text:
            return words
    return None
