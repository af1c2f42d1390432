"""Engine backends. Only names live here; each backend imports its heavy modules when built."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import Backend, Engine, ExecResult

__all__ = ["Backend", "Engine", "ExecResult", "create", "resolve"]


def resolve(name: str) -> tuple[str, str]:
    """The backend that ``name`` stands for here, and why (``auto`` is resolved)."""
    if name == "auto":
        return "cuda", (
            "auto: no TensorRT backend in this version; the CUDA reference backend runs "
            "(NVRTC kernels in a CUDA context, not TensorRT)"
        )
    if name == "cuda":
        return "cuda", "selected"
    raise ConfigError(f"unknown backend {name!r}")


def create(name: str, device: int, cache_dir: Path | None) -> Backend:
    resolved, _why = resolve(name)
    if resolved != "cuda":  # pragma: no cover - the TensorRT backends come with their issue
        raise ConfigError(f"backend {resolved!r} is not available in this version")
    from .cuda_ref import CudaReferenceBackend

    return CudaReferenceBackend(device=device, cache_dir=cache_dir)
