"""What the machine has, learned without initialising CUDA in this process.

pytest loads plugins before any test runs; if the plugin called ``cuInit`` here it would itself
choose the init order, and a process forked afterwards would inherit a broken driver state. So the
device probe runs in a separate, bare Python (a fraction of a second), speaks to
``libcuda`` through :mod:`ctypes` only, and reports a plain dict. :func:`cuda_untouched` proves, in
this process, that CUDA was never initialised, which is what makes forking safe.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

CUDA_ERROR_NOT_INITIALIZED = 3

_PROBE_SOURCE = r"""
import ctypes, json, sys
out = {"driver": None, "devices": [], "error": None}
try:
    lib = ctypes.CDLL("libcuda.so.1")
except OSError as exc:
    out["error"] = "libcuda.so.1 cannot be loaded (" + str(exc) + ")"
    print(json.dumps(out)); sys.exit(0)
rc = lib.cuInit(0)
if rc != 0:
    name = ctypes.c_char_p()
    lib.cuGetErrorName(rc, ctypes.byref(name))
    out["error"] = "cuInit(0) returned " + (name.value or b"?").decode()
    print(json.dumps(out)); sys.exit(0)
v = ctypes.c_int()
lib.cuDriverGetVersion(ctypes.byref(v))
out["driver_api"] = v.value
count = ctypes.c_int()
lib.cuDeviceGetCount(ctypes.byref(count))
for i in range(count.value):
    dev = ctypes.c_int()
    lib.cuDeviceGet(ctypes.byref(dev), i)
    buf = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(buf, 256, dev)
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
    mem = ctypes.c_size_t()
    lib.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
    out["devices"].append({"index": i, "name": buf.value.decode(errors="replace"),
                           "cc": [major.value, minor.value], "memory": mem.value})
try:
    nvml = ctypes.CDLL("libnvidia-ml.so.1")
    if nvml.nvmlInit_v2() == 0:
        b = ctypes.create_string_buffer(96)
        if nvml.nvmlSystemGetDriverVersion(b, 96) == 0:
            out["driver"] = b.value.decode()
except OSError:
    pass
print(json.dumps(out))
"""


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    cc: tuple[int, int]
    memory: int

    @property
    def arch(self) -> str:
        return f"sm_{self.cc[0]}{self.cc[1]}"


@dataclass(frozen=True)
class MachineInfo:
    """The CUDA side of the machine, as the probe saw it."""

    error: str | None
    driver: str | None = None
    driver_api: int | None = None
    devices: tuple[Device, ...] = field(default_factory=tuple)

    @property
    def has_gpu(self) -> bool:
        return self.error is None and bool(self.devices)

    @property
    def why_no_gpu(self) -> str:
        if self.error is not None:
            return self.error
        return "the CUDA driver reports no device" if not self.devices else ""

    def describe(self) -> str:
        if not self.has_gpu:
            return "no usable GPU: " + self.why_no_gpu
        api = self.driver_api or 0
        parts = [
            f"driver {self.driver or '?'} (CUDA {api // 1000}.{api % 1000 // 10})",
            *(f"{d.index}: {d.name} (cc {d.cc[0]}.{d.cc[1]})" for d in self.devices),
        ]
        return ", ".join(parts)


@cache
def machine() -> MachineInfo:
    """Probe the CUDA driver in a fresh interpreter (once per process)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _PROBE_SOURCE],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return MachineInfo(error="the CUDA driver probe hung for 60 s (cuInit did not return)")
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return MachineInfo(error=f"the CUDA driver probe died (exit {proc.returncode}): {tail[0]}")
    data = json.loads(proc.stdout)
    devices = tuple(
        Device(d["index"], d["name"], (d["cc"][0], d["cc"][1]), d["memory"])
        for d in data["devices"]
    )
    return MachineInfo(
        error=data["error"],
        driver=data.get("driver"),
        driver_api=data.get("driver_api"),
        devices=devices,
    )


def _nvidia_files() -> list[str]:
    """NVIDIA device files this process holds open: each is a live driver client."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/dev/nvidia"):
            found.add(target)
    return sorted(found)


def cuda_untouched(*, nvml_ok: bool = False) -> tuple[bool, str]:
    """Prove that CUDA was never initialised in this process, so that forking it is safe.

    Returns ``(True, how)`` when proven, ``(False, why)`` otherwise. Three facts make the proof:
    torch says it did not initialise CUDA; ``cuInit`` was never called (if ``libcuda`` is mapped,
    ``cuCtxGetCurrent`` answers ``CUDA_ERROR_NOT_INITIALIZED`` until someone calls it; loading the
    library does not initialise it, so asking is safe); NVML was never loaded (its state does
    not survive a fork: a worker forked after ``torch.cuda.is_available()`` had used NVML can
    crash in torch's CUDA init, docs/isolation.md); and no NVIDIA device file is open (any live
    driver client). ``nvml_ok`` skips the NVML facts where nothing will be forked.
    """
    if sys.platform != "linux":
        return False, f"per-process proof needs Linux (/proc), this is {sys.platform}"
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError as exc:
        return False, f"/proc/self/maps cannot be read ({exc})"
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized():
                return False, "torch.cuda.is_initialized() is True"
        except Exception:  # a partially imported torch: fall through to the driver check
            pass
    how = "libcuda is not loaded in this process"
    if "libcuda.so" in maps:
        import ctypes

        try:
            lib = ctypes.CDLL("libcuda.so.1")
        except OSError as exc:
            return False, f"libcuda is mapped but cannot be opened again ({exc})"
        ctx = ctypes.c_void_p()
        rc = lib.cuCtxGetCurrent(ctypes.byref(ctx))
        if rc != CUDA_ERROR_NOT_INITIALIZED:
            return False, (
                f"cuInit was already called in this process (cuCtxGetCurrent returned {rc})"
            )
        how = "libcuda is loaded but cuInit was never called"
    if not nvml_ok and "libnvidia-ml.so" in maps:
        return False, (
            "NVML was loaded in this process (libnvidia-ml.so is mapped: torch.cuda."
            "is_available() or device_count() with PYTORCH_NVML_BASED_CUDA_CHECK=1, or pynvml); "
            "its state does not survive a fork (a worker forked after it can crash in torch's CUDA "
            "init)"
        )
    files = [] if nvml_ok else _nvidia_files()
    if files:
        return False, (
            f"this process holds NVIDIA device files open ({', '.join(files)}): a driver client "
            "exists (NVML, as torch.cuda.is_available() or pynvml use it), and its state does "
            "not survive a fork"
        )
    return True, how + "; no NVIDIA device file is open"


def cuda_available() -> bool:
    """Whether a CUDA GPU is usable here, asked of a child process.

    Use it instead of ``torch.cuda.is_available()`` in module-level ``skipif`` conditions: that
    call initialises CUDA (or NVML) in the pytest process, after which no fresh process can be
    forked from it.
    """
    return machine().has_gpu


def versions() -> dict[str, str]:
    """Installed versions of the libraries that matter, read from metadata (nothing imported)."""
    out: dict[str, str] = {"python": sys.version.split()[0]}
    for dist in (
        "torch",
        "cuda-bindings",
        "cuda-python",
        "tensorrt",
        "tensorrt-rtx-cu13",
        "tensorrt-cu13",
        "tensorrt-cu12",
        "numpy",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def environment() -> dict[str, Any]:
    """The fingerprint a result depends on. Nothing here initialises CUDA."""
    info = machine()
    torch = sys.modules.get("torch")
    cuda_runtime = getattr(getattr(torch, "version", None), "cuda", None) if torch else None
    return {
        "gpus": [
            {"index": d.index, "name": d.name, "compute_capability": f"{d.cc[0]}.{d.cc[1]}"}
            for d in info.devices
        ],
        "gpu_error": info.error,
        "driver": info.driver,
        "cuda_driver_api": info.driver_api,
        "cuda_runtime_torch": cuda_runtime,
        "versions": versions(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
    }
