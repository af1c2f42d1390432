"""TensorRT and TensorRT-RTX: one code path that builds, inspects and runs a conv2d engine.

``tensorrt`` (full TensorRT) and ``tensorrt_rtx`` (TensorRT-RTX) expose the same Python API
(``Builder``, ``create_network``, ``add_convolution_nd``, ``build_serialized_network``,
``Runtime``...), so every function here takes the module *object* and detects features with
``hasattr`` rather than version pins: a pin would go stale with each release, an attribute check
says exactly what this installed library can do. The module-specific bits are small and named:

* ``loader._target_enum`` -- only TensorRT-RTX can build for a chosen compute capability
  (``IBuilderConfig.set_compute_capability``); full TensorRT builds for the GPU it runs on.
* :data:`RTX_MIN_RUNNABLE_CC` / :data:`RTX_RUNS_ABOVE_CC` -- what the TensorRT-RTX runtime accepts.

As Polygraphy splits its TensorRT backend, the roles are modules: :mod:`.logger` (the module
and its logger), :mod:`.network` (the network under test), :mod:`.loader` (building a plan),
:mod:`.inspect` (where it runs, what a plan holds) and :mod:`.runner` (running an engine). This
package re-exports their public names.

Nothing here imports ``tensorrt``, ``tensorrt_rtx``, ``numpy``, ``torch`` or ``cuda`` at module
level: importing the plugin must not load a CUDA library, because which library initialises CUDA
first is exactly what the plugin tests.

What works without a GPU (TensorRT-RTX, docs/tensorrt.md): building and serializing every
engine of the conv matrix, the network-level checks, and looking into the plan's bytes.
Deserializing needs a driver (``cudaError 35: CUDA driver version is insufficient``), so the
engine inspector and :class:`TensorRTBackend` execution need a GPU the library runs on.
"""

from __future__ import annotations

from .inspect import (
    RTX_MIN_RUNNABLE_CC,
    RTX_RUNS_ABOVE_CC,
    can_run_here,
    inspect_plan,
    parse_conv_record,
    plan_conv_layers,
    runnable_compute_capabilities,
)
from .loader import build_plan, builder_settings
from .logger import (
    MODULES,
    CapturingLogger,
    EngineBuildError,
    LogRecord,
    load_module,
    module_version,
)
from .network import (
    CONV_LAYER_NAME,
    INPUT_NAME,
    OUTPUT_NAME,
    ConvNetwork,
    bf16_bits,
    build_conv_network,
    weights_digest,
)
from .runner import TensorRTBackend

__all__ = [
    "CONV_LAYER_NAME",
    "INPUT_NAME",
    "MODULES",
    "OUTPUT_NAME",
    "RTX_MIN_RUNNABLE_CC",
    "RTX_RUNS_ABOVE_CC",
    "CapturingLogger",
    "ConvNetwork",
    "EngineBuildError",
    "LogRecord",
    "TensorRTBackend",
    "bf16_bits",
    "build_conv_network",
    "build_plan",
    "builder_settings",
    "can_run_here",
    "inspect_plan",
    "load_module",
    "module_version",
    "parse_conv_record",
    "plan_conv_layers",
    "runnable_compute_capabilities",
    "weights_digest",
]
