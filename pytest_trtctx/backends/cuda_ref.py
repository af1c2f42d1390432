"""The CUDA reference backend: NVRTC conv kernels loaded into a CUDA context, as TensorRT does.

This is **not** TensorRT. It stands in for an engine's kernels where it matters for context bugs:

* ``build`` loads the cubin with ``cuModuleLoadData`` into the context current on the calling
  thread, and copies the weights into device memory allocated there: the engine belongs to that
  context, as a deserialized TensorRT engine does.
* ``execute`` behaves like a library built on the CUDA runtime: on a thread with no current context
  it makes the device's primary context current (``cudaSetDevice`` semantics), then creates a
  stream in the current context and launches. Launching a kernel of one context while another is
  current fails with ``CUDA_ERROR_INVALID_HANDLE``, TensorRT's "invalid resource handle".
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

from ..cuda import driver
from ..cuda.driver import check
from ..errors import CudaError
from .base import Engine, ExecResult

DESCRIPTION = "CUDA reference backend (NVRTC kernels loaded into a CUDA context; not TensorRT)"


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


class CudaReferenceBackend:
    name = "cuda"
    description = DESCRIPTION
    launch_holds_gil = False  # cuda-bindings releases it around driver calls

    def __init__(self, device: int, cache_dir: Path | None) -> None:
        self.device = device
        self.cache_dir = cache_dir
        #: context ID -> CUmodule. By ID, not handle value: a context made after one was
        #: destroyed may get its handle value (context-destroyed makes one after each destroy),
        #: and a module of the destroyed one is freed driver state.
        self._modules: dict[int, Any] = {}
        #: Load each engine's kernel from a library of its own (cuLibraryLoadData) instead of the
        #: context's module: the driver then loads it into a context at its first launch under
        #: lazy loading, as it does the CUDA runtime's kernels (the lazy-stall scenario).
        self.load_as_library = False

    def _ensure_context(self) -> None:
        """What the CUDA runtime does on a thread with no current context."""
        if int(driver.current()) == 0:
            driver.set_current(driver.retain_primary(self.device))

    def _cubin(self) -> bytes:
        from .kernels import compile_conv

        major, minor = driver.compute_capability(self.device)
        return compile_conv(f"sm_{major}{minor}", cache_dir=self.cache_dir).data

    def _module(self) -> Any:
        ctx = driver.context_id(driver.current())
        module = self._modules.get(ctx)
        if module is None:
            module = check("cuModuleLoadData", driver.api().cuModuleLoadData(self._cubin()))
            self._modules[ctx] = module
        return module

    def function(self, name: str) -> Any:
        """The kernel ``name`` of this backend's module in the current context."""
        return check(
            "cuModuleGetFunction", driver.api().cuModuleGetFunction(self._module(), name.encode())
        )

    def _library_kernel(self, name: str, details: dict[str, Any]) -> Any:
        """``name`` from a library of its own, as a CUfunction (a CUkernel launches as one)."""
        drv = driver.api()
        library = check(
            "cuLibraryLoadData", drv.cuLibraryLoadData(self._cubin(), None, None, 0, None, None, 0)
        )
        details["library"] = library
        details["kernel"] = check(
            "cuLibraryGetKernel", drv.cuLibraryGetKernel(library, name.encode())
        )
        return drv.CUfunction(int(details["kernel"]))

    def preload(self, engine: Engine) -> None:
        """Load the engine's kernel into the current context now, not at its first launch (what
        CUDA_MODULE_LOADING=EAGER does for every kernel). A module's kernel is loaded already."""
        kernel = engine.details.get("kernel")
        if kernel is not None:
            check("cuKernelGetFunction", driver.api().cuKernelGetFunction(kernel))

    def build(self, spec: Any, weight: Any, bias: Any | None) -> Engine:
        from .kernels import KERNEL_NAMES

        self._ensure_context()
        drv = driver.api()
        ctx = driver.current()
        built_in = driver.describe_current(self.device)
        details: dict[str, Any] = {}
        name = KERNEL_NAMES[spec.dtype]
        if self.load_as_library:
            function = self._library_kernel(name, details)
        else:
            function = self.function(name)
        dtype = _torch_dtype(spec.dtype)
        buffers: list[Any] = []
        pointers: list[int] = []
        for host in (weight, bias):
            if host is None:
                pointers.append(0)
                continue
            data = host.detach().to("cpu", dtype).contiguous()
            nbytes = data.numel() * data.element_size()
            dptr = check("cuMemAlloc", drv.cuMemAlloc(nbytes))
            check("cuMemcpyHtoD", drv.cuMemcpyHtoD(dptr, data.data_ptr(), nbytes))
            buffers.append(dptr)
            pointers.append(int(dptr))
        return Engine(
            spec=spec,
            device=self.device,
            context=ctx,
            built_in=built_in,
            handle=function,
            details={**details, "buffers": buffers, "weight": pointers[0], "bias": pointers[1]},
        )

    def execute(self, engine: Engine, x: Any, y: Any, stream: int | None = None) -> ExecResult:
        from .kernels import BLOCK_SIZE, grid_size

        drv = driver.api()
        try:
            self._ensure_context()
            ran_in = driver.describe_current(self.device)
        except CudaError as exc:
            return ExecResult(exc.result_name, False, None, [str(exc)], exc.result_name)
        spec = engine.spec
        n, c, h, w = spec.input_shape
        k, _, r, s = spec.weight_shape
        p, q = spec.output_hw
        args: list[Any] = [
            ctypes.c_void_p(x.data_ptr()),
            ctypes.c_void_p(engine.details["weight"]),
            ctypes.c_void_p(engine.details["bias"]),
            ctypes.c_void_p(y.data_ptr()),
            *(
                ctypes.c_int(v)
                for v in (
                    n,
                    c,
                    h,
                    w,
                    k,
                    r,
                    s,
                    p,
                    q,
                    spec.stride[0],
                    spec.stride[1],
                    spec.padding[0],
                    spec.padding[1],
                    spec.dilation[0],
                    spec.dilation[1],
                    spec.groups,
                )
            ),
        ]
        params = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        errors: list[str] = []
        own = stream is None  # a stream of its own: made, synchronised and destroyed here
        try:
            if own:
                stream = check("cuStreamCreate", drv.cuStreamCreate(1))  # non-blocking
            total = n * k * p * q
            check(
                "cuLaunchKernel",
                drv.cuLaunchKernel(
                    engine.handle,
                    grid_size(total),
                    1,
                    1,
                    BLOCK_SIZE,
                    1,
                    1,
                    0,
                    stream,
                    ctypes.addressof(params),
                    0,
                ),
            )
            if own:
                check("cuStreamSynchronize", drv.cuStreamSynchronize(stream))
        except CudaError as exc:
            errors.append(str(exc))
        finally:
            if own and stream is not None:
                drv.cuStreamDestroy(stream)
        if errors:
            name = errors[0].split(" returned ")[-1].split(":")[0]
            return ExecResult(name, False, ran_in, errors, name)
        return ExecResult("CUDA_SUCCESS", True, ran_in)

    def close(self, engine: Engine) -> None:
        """Free the engine's weights in the context that owns them, and its library if any."""
        drv = driver.api()
        driver.push(engine.context)
        try:
            for dptr in engine.details.get("buffers", []):
                drv.cuMemFree(dptr)
        finally:
            driver.pop()
        if "library" in engine.details:
            drv.cuLibraryUnload(engine.details["library"])
