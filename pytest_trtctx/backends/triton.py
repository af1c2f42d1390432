"""The Triton backend: each spec runs as a Triton convolution kernel compiled at test time.

Triton compiles a kernel once and loads it (``cuModuleLoadData``) into the context current at
its first launch, then launches that handle wherever it is called from: torch-tensorrt runs
TensorRT engines and inductor's Triton kernels in one process, and a TensorRT wrapper that
pushes its own context around torch work launches cached Triton kernels while another context is
current. So, as for the other backends:

* ``build`` compiles the kernel of :mod:`.triton_conv` for the spec (``JITFunction.warmup``) and
  loads it into the context current on the calling thread (the compiled kernel's handles,
  initialised now rather than at the first launch); the weights go into device memory allocated
  in that context (:class:`.vendor.DeviceBuffers`).
* ``execute`` launches that loaded kernel in whatever context is current then, on the caller's
  stream or a stream of its own; Triton's error is kept with its exact text
  (``Triton Error [CUDA]: invalid resource handle``).

:func:`load_kernel` and :func:`launch_loaded` are the two halves on their own, for a scenario that
loads a kernel under torch and launches it while another context is pushed.

Engine cache: Triton keeps its compiled kernels on disk itself (``~/.triton/cache``, or
``TRITON_CACHE_DIR``), keyed by source, options and target; a rebuild of the plugin's caches
(``--trtctx-rebuild``) does not empty it, and what is loaded into a context is never cached.
Nothing here imports ``triton`` or ``torch`` at module level: importing ``triton`` initialises
CUDA.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cuda import driver
from ..errors import SpecRefused
from .base import Engine, ExecResult
from .vendor import DeviceBuffers, ensure_context, run_on_stream, torch_dtype

if TYPE_CHECKING:
    from ..engines.spec import ConvSpec

NAME = "triton"
DESCRIPTION = (
    "Triton backend (a direct conv2d kernel written in Triton, compiled at build and loaded into "
    "the context current then; not TensorRT)"
)
#: Outputs per program (the kernel's BLOCK_SIZE), as in :mod:`.triton_conv`.
BLOCK = 128
#: The kernel unrolls the R x S window: more taps than this would make compiling it the test.
MAX_TAPS = 256


def installed() -> bool:
    """Whether ``triton`` can be imported here (asked without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def refusal(spec: ConvSpec) -> str | None:
    """Why the kernel cannot run ``spec`` (None: it can). Decided from the spec alone."""
    taps = spec.kernel[0] * spec.kernel[1]
    if taps > MAX_TAPS:
        return (
            f"the Triton kernel unrolls the kernel window: at most {MAX_TAPS} taps, "
            f"{spec.name} has {spec.kernel[0]}x{spec.kernel[1]}"
        )
    return None


def shape_arguments(spec: ConvSpec) -> tuple[int, ...]:
    """The kernel's integer arguments after its four pointers, in its order."""
    n, c, h, w = spec.input_shape
    k = spec.out_channels
    p, q = spec.output_hw
    return (
        n * k * p * q,
        c,
        h,
        w,
        k,
        p,
        q,
        spec.stride[0],
        spec.stride[1],
        spec.padding[0],
        spec.padding[1],
        spec.dilation[0],
        spec.dilation[1],
        k // spec.groups,
    )


def constants(spec: ConvSpec) -> dict[str, Any]:
    """The kernel's compile-time constants for ``spec``."""
    return {
        "C_PER_GROUP": spec.in_channels // spec.groups,
        "R": spec.kernel[0],
        "S": spec.kernel[1],
        "HAS_BIAS": spec.bias,
        "BLOCK_SIZE": BLOCK,
    }


def grid(spec: ConvSpec) -> tuple[int, int, int]:
    """One program per :data:`BLOCK` outputs."""
    total = shape_arguments(spec)[0]
    return ((total + BLOCK - 1) // BLOCK, 1, 1)


@dataclass
class LoadedKernel:
    """A compiled kernel whose module is loaded into the context that was current at load."""

    spec: ConvSpec
    compiled: Any  # triton.compiler.CompiledKernel
    grid: tuple[int, int, int]

    @property
    def function(self) -> int:
        """The CUfunction handle Triton launches (it belongs to the load's context)."""
        return int(self.compiled.function)


def load_kernel(spec: ConvSpec) -> LoadedKernel:
    """Compile the conv kernel for ``spec`` (Triton's disk cache may answer) and load it into the
    context current on this thread, as its first launch would (Triton retains and makes the
    primary context current where none is)."""
    from .triton_conv import kernel

    dtype = torch_dtype(spec.dtype)
    where = grid(spec)
    # Pointer arguments are given as dtypes: warmup compiles for them without any tensor, so
    # the build allocates nothing through torch (torch's first allocation switches contexts).
    compiled = kernel().warmup(
        dtype, dtype, dtype, dtype, *shape_arguments(spec), **constants(spec), grid=where
    )
    # Triton keeps one compiled kernel per device, its module loaded into the context of its
    # first launch, and launches that handle from then on. An engine is loaded into the context
    # current at its build: a copy of the compiled kernel without handles is loaded anew here.
    fresh = copy.copy(compiled)
    fresh.module = fresh.function = fresh._run = None
    # Triton loads a compiled kernel lazily, at its first launch; _init_handles is that load.
    init = getattr(fresh, "_init_handles", None)
    if init is not None:
        init()
    else:  # the launcher property loads the handles too
        _ = fresh.run
    return LoadedKernel(spec, fresh, where)


def _address(value: Any) -> int:
    return value if isinstance(value, int) else int(value.data_ptr())


def launch_loaded(loaded: LoadedKernel, x: Any, w: Any, b: Any, y: Any, stream: int) -> None:
    """Launch an already loaded kernel on ``stream`` in whatever context is current now; raises
    Triton's own error (``RuntimeError: Triton Error [CUDA]: ...``). Tensors or addresses."""
    spec = loaded.spec
    args = [_address(x), _address(w), _address(b) if b is not None else 0, _address(y)]
    args += list(shape_arguments(spec))
    args += list(constants(spec).values())
    loaded.compiled[loaded.grid](*args, stream=stream)


class TritonBackend:
    name = NAME
    description = DESCRIPTION
    launch_holds_gil = False  # its launches ran under lazy-stall on a GPU (none stalled)

    def __init__(self, device: int, cache_dir: Path | None) -> None:
        self.device = device
        self.cache_dir = cache_dir  # unused: Triton keeps its own cache (see the module's doc)

    def build(self, spec: ConvSpec, weight: Any, bias: Any | None) -> Engine:
        why = refusal(spec)
        if why is not None:
            raise SpecRefused(why)
        ensure_context(self.device)
        ctx = driver.current()
        built_in = driver.describe_current(self.device)
        loaded = load_kernel(spec)
        buffers = DeviceBuffers(ctx)
        details = {
            "buffers": buffers,
            "weight": buffers.upload(weight, spec.dtype),
            "bias": buffers.upload(bias, spec.dtype),
            "kernel": str(getattr(loaded.compiled, "name", "")),
        }
        return Engine(spec, self.device, ctx, built_in, handle=loaded, details=details)

    def execute(self, engine: Engine, x: Any, y: Any, stream: int | None = None) -> ExecResult:
        """Launch the engine's kernel in the context current now; without ``stream`` on a stream
        of its own, synchronously."""
        loaded: LoadedKernel = engine.handle
        weight, bias = engine.details["weight"], engine.details["bias"]

        def launch(target: int) -> None:
            launch_loaded(loaded, x, weight, bias or None, y, target)

        label = f"triton kernel {engine.details.get('kernel') or 'conv2d'}"
        return run_on_stream(launch, stream, self.device, label)

    def close(self, engine: Engine) -> None:
        """Free the weights in their context. The loaded module stays: Triton caches the compiled
        kernel, its handles included, for the process."""
        buffers = engine.details.get("buffers")
        if isinstance(buffers, DeviceBuffers):
            buffers.free()
