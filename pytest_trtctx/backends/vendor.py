"""What the vendor backends (cuDNN, Triton) share: their engine's device memory, the runtime's
context rule, and one run on a stream, with the library's own words for what went wrong.

* :func:`ensure_context` is what the CUDA runtime does on a thread with no current context (the
  device's primary context made current), as both libraries do underneath: a thread that runs an
  engine meets the same rule whichever backend it is.
* :class:`DeviceBuffers` uploads an engine's weights with ``cuMemAlloc`` into the context current
  at build and frees them in that context: the engine's memory belongs to its context, as a
  deserialized TensorRT engine's does, and building allocates nothing through torch (torch's
  first allocation switches contexts, which is what the orders test).
* :func:`run_on_stream` runs a launch on the caller's stream (left to the caller to synchronise:
  a capture must not be) or on a stream of its own made in the context current then, synchronised
  and destroyed; an exception of the library is kept with its exact text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..cuda import driver
from ..errors import CudaError
from .base import ExecResult


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def ensure_context(device: int) -> None:
    """The CUDA runtime's rule on a thread with no current context: the device's primary context
    is made current (cudaSetDevice semantics)."""
    if int(driver.current()) == 0:
        driver.set_current(driver.retain_primary(device))


@dataclass
class DeviceBuffers:
    """Device copies of host tensors, allocated in the context current when they were made."""

    context: Any
    pointers: list[int] = field(default_factory=list)

    def upload(self, host: Any | None, dtype: str) -> int:
        """``host`` (a CPU tensor, or None) on the device in ``dtype``; its address (0 for None)."""
        if host is None:
            return 0
        drv = driver.api()
        data = host.detach().to("cpu", torch_dtype(dtype)).contiguous()
        nbytes = data.numel() * data.element_size()
        dptr = driver.check("cuMemAlloc", drv.cuMemAlloc(max(nbytes, 1)))
        self.pointers.append(int(dptr))
        driver.check("cuMemcpyHtoD", drv.cuMemcpyHtoD(dptr, data.data_ptr(), nbytes))
        return int(dptr)

    def allocate(self, nbytes: int) -> int:
        """Uninitialised device memory of ``nbytes`` (0: none, address 0)."""
        if nbytes <= 0:
            return 0
        dptr = driver.check("cuMemAlloc", driver.api().cuMemAlloc(nbytes))
        self.pointers.append(int(dptr))
        return int(dptr)

    def free(self) -> None:
        """Free every buffer in the context that owns it (pushed around the frees)."""
        if not self.pointers:
            return
        drv = driver.api()
        try:
            driver.push(self.context)
        except CudaError:  # a destroyed context took its memory with it (context-destroyed)
            self.pointers.clear()
            return
        try:
            for dptr in self.pointers:
                drv.cuMemFree(dptr)
        finally:
            driver.pop()
            self.pointers.clear()


def first_line(exc: BaseException) -> str:
    """An exception's own first line, as the library wrote it (its type where it wrote none)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def run_on_stream(
    launch: Callable[[int], None], stream: int | None, device: int, label: str
) -> ExecResult:
    """``launch(stream)`` in the context current on this thread (the primary one made current
    where there is none, as the runtime would). ``label`` prefixes each error with what ran
    (``cudnn plan 3 (eng1...)``); the signature is the library's first line alone, so that a
    known failure matches the library's words whatever engine said them."""
    drv = driver.api()
    try:
        ensure_context(device)
        ran_in = driver.describe_current(device)
    except CudaError as exc:
        return ExecResult(exc.result_name, False, None, [str(exc)], exc.result_name)
    own = stream is None
    target: Any = stream
    errors: list[str] = []
    signature: str | None = None
    returned: Any = "completed" if own else "enqueued"
    try:
        if own:
            target = driver.check("cuStreamCreate", drv.cuStreamCreate(1))  # non-blocking
        launch(int(target))
        if own:
            driver.check("cuStreamSynchronize", drv.cuStreamSynchronize(target))
    except CudaError as exc:
        errors.append(f"{label}: {exc}")
        signature, returned = exc.result_name, exc.result_name
    except Exception as exc:  # the library's own exception: its text is the finding
        errors.append(f"{label}: {type(exc).__name__}: {str(exc).strip()}")
        signature, returned = first_line(exc), type(exc).__name__
    finally:
        if own and target is not None:
            drv.cuStreamDestroy(target)
    return ExecResult(returned, not errors, ran_in, errors, signature)
