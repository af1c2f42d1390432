"""pytest-trtctx: test TensorRT / PyTorch CUDA context init orders.

Importing this package imports no torch, TensorRT or CUDA module (see ``plugin``).
"""

from __future__ import annotations

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
from .names import ORDERS
from .probe import cuda_available

#: The one place the version is written: the build reads it (pyproject.toml, dynamic), the
#: installed metadata and ``pytest-trtctx --version`` come from it.
__version__ = "0.1.0"

__all__ = [
    "ORDERS",
    "BackendUnavailable",
    "ConfigError",
    "CudaError",
    "KernelCompileError",
    "MatrixError",
    "NoCudaDriver",
    "OrderError",
    "TrtctxError",
    "__version__",
    "cuda_available",
]
