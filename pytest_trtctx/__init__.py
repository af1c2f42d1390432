"""pytest-trtctx: test TensorRT / PyTorch CUDA context init orders.

Importing this package imports no torch, TensorRT or CUDA module (see ``plugin``).
"""

from __future__ import annotations

from .cuda.probe import cuda_available
from .errors import (
    BackendUnavailable,
    ConfigError,
    CudaError,
    KernelCompileError,
    MatrixError,
    NoCudaDriver,
    OrderError,
    TrtctxError,
)
from .scenarios import ORDERS, KnownFailure, Scenario, State

#: The one place the version is written: the build reads it (pyproject.toml, dynamic), the
#: installed metadata and ``pytest-trtctx --version`` come from it.
__version__ = "0.1.0"

__all__ = [
    "ORDERS",
    "BackendUnavailable",
    "ConfigError",
    "CudaError",
    "KernelCompileError",
    "KnownFailure",
    "MatrixError",
    "NoCudaDriver",
    "OrderError",
    "Scenario",
    "State",
    "TrtctxError",
    "__version__",
    "cuda_available",
]
