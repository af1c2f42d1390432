"""Engine backends. Only names live here; each backend imports its heavy modules when built.

The vendor backends (``cudnn``, ``triton``) run real libraries' engines and are chosen by name
only: ``auto`` never picks them (it picks among the TensorRT backends and the reference one).

``auto`` is resolved in the process that runs the test, never in the pytest process: finding out
whether TensorRT-RTX can run here means importing it, and the pytest process must stay clean of
CUDA libraries' side effects (it is the parent of every isolated worker).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import BackendUnavailable, ConfigError
from ..messages import INSTALL_CUDNN, INSTALL_TRITON, MSG_NEEDS_PACKAGE
from .base import Backend, Engine, ExecResult

__all__ = [
    "Backend",
    "Engine",
    "ExecResult",
    "create",
    "describe",
    "installed",
    "installed_vendors",
    "select",
]

TENSORRT_MODULES = {"tensorrt": "tensorrt", "tensorrt_rtx": "tensorrt_rtx"}
REFERENCE = "cuda"
#: The vendor backends: the module each imports, the package that brings it, its install line.
#: Triton first: in a list (``--trtctx-backend=vendors``) the first backend keeps its ids, which
#: cuDNN's plan slots cannot (settings/backend_axis.py).
VENDOR = {
    "triton": ("triton", "triton", INSTALL_TRITON),
    "cudnn": ("cudnn", "nvidia-cudnn-frontend", INSTALL_CUDNN),
}
AUTO_RULE = (
    "full TensorRT if it imports, else TensorRT-RTX where it can run on this GPU, else the CUDA "
    "reference backend (NVRTC kernels in a CUDA context, not TensorRT)"
)


def installed(module: str) -> bool:
    """Whether ``module`` is installed here: found, not imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed_vendors() -> list[str]:
    """The vendor backends whose library is installed here (found, not imported)."""
    return [name for name, (module, _package, _install) in VENDOR.items() if installed(module)]


def describe(name: str) -> str:
    """What ``name`` means here, for the report header (imports nothing)."""
    if name == "auto":
        found = [m for m in TENSORRT_MODULES.values() if installed(m)]
        have = ", ".join(found) if found else "neither tensorrt nor tensorrt_rtx"
        return f"auto: {AUTO_RULE}; installed: {have}"
    if name == REFERENCE:
        return "the CUDA reference backend (NVRTC kernels in a CUDA context, not TensorRT)"
    if name in TENSORRT_MODULES:
        state = "installed" if installed(TENSORRT_MODULES[name]) else "NOT installed"
        return f"{name} ({state})"
    if name in VENDOR:
        module, package, install = VENDOR[name]
        state = (
            f"{package} installed" if installed(module) else f"{package} NOT installed: {install}"
        )
        return f"{_description(name)} ({state})"
    raise ConfigError(f"unknown backend {name!r}")


def _description(name: str) -> str:
    if name == "cudnn":
        from .cudnn import DESCRIPTION
    else:
        from .triton import DESCRIPTION
    return DESCRIPTION


def select(name: str, compute_capability: tuple[int, int] | None) -> tuple[str, str]:
    """The backend that runs here and why; BackendUnavailable when an explicit one cannot.

    Called in the test's own process. ``compute_capability`` comes from the device probe.
    """
    from .tensorrt import can_run_here

    if name == REFERENCE:
        return REFERENCE, "selected"
    if name in VENDOR:
        module, package, install = VENDOR[name]
        if not installed(module):  # first: installing it is the step a user can take here
            raise BackendUnavailable(MSG_NEEDS_PACKAGE.format(package=package, install=install))
        if compute_capability is None:
            raise BackendUnavailable(f"{name} needs a GPU to run engines; there is none here")
        return name, "selected"
    if name in TENSORRT_MODULES:
        if compute_capability is None:
            raise BackendUnavailable(f"{name} needs a GPU to run engines; there is none here")
        reason = can_run_here(TENSORRT_MODULES[name], compute_capability)
        if reason is not None:
            raise BackendUnavailable(reason)
        return name, "selected"
    if name != "auto":
        raise ConfigError(f"unknown backend {name!r}")
    notes = []
    for candidate in ("tensorrt", "tensorrt_rtx"):
        if compute_capability is None:
            notes.append(f"{candidate}: no GPU")
            continue
        reason = can_run_here(TENSORRT_MODULES[candidate], compute_capability)
        if reason is None:
            return candidate, f"auto: {candidate} can run here"
        notes.append(reason)
    return REFERENCE, "auto: the CUDA reference backend, because " + "; ".join(notes)


def create(name: str, device: int, cache_dir: Path | None, plans: int | None = None) -> Backend:
    """A backend by resolved name (see :func:`select`); ``plans``: how many of a spec's plans a
    backend that builds several (cuDNN) builds, None for every one."""
    if name == REFERENCE:
        from .cuda_ref import CudaReferenceBackend

        return CudaReferenceBackend(device=device, cache_dir=cache_dir)
    if name in TENSORRT_MODULES:
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(TENSORRT_MODULES[name], device, cache_dir)
    if name == "cudnn":
        from .cudnn import CudnnBackend

        return CudnnBackend(device, cache_dir, plans)
    if name == "triton":
        from .triton import TritonBackend

        return TritonBackend(device, cache_dir)
    raise ConfigError(f"unknown backend {name!r}")
