"""Reference direct-convolution kernels, compiled to CUBIN by NVRTC, with an on-disk cache.

The kernels are the CUDA reference backend's ground truth for conv2d: deliberately naive (one thread
per output element, float accumulation) so that their indexing can be checked by reading it against
the definition of ``torch.nn.functional.conv2d``. NVRTC needs no GPU, so compiling (and the tests of
this module) works on a build machine; only launching needs a driver.

``cuda.bindings.nvrtc`` is imported lazily, inside functions: importing the plugin must never import
a CUDA module, since which CUDA library gets loaded first is exactly what the plugin tests.
"""

from __future__ import annotations

import hashlib
import re
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_trtctx import storage
from pytest_trtctx.errors import BackendUnavailable, KernelCompileError
from pytest_trtctx.storage import CUBIN_SUBDIR, default_cache_dir, digest

__all__ = [
    "BLOCK_SIZE",
    "CONV_SOURCE",
    "KERNEL_NAMES",
    "MAX_GRID_BLOCKS",
    "POLL_KERNEL",
    "Cubin",
    "clear_memo",
    "compile_conv",
    "cubin_has_kernel",
    "grid_size",
    "nvrtc_options",
    "nvrtc_version",
]

#: Threads per block for every kernel of :data:`CONV_SOURCE`.
BLOCK_SIZE = 256

#: Upper bound on the blocks :func:`grid_size` asks for. The kernels use a grid-stride loop, so a
#: capped grid still covers every element; 65535 blocks of 256 threads (16.7 M threads) is far
#: more than any GPU keeps resident, and 65535 is a legal ``gridDim.x`` on every architecture.
MAX_GRID_BLOCKS = 65535

#: dtype name (as ``str(torch.float32).removeprefix("torch.")`` spells it) -> kernel symbol.
KERNEL_NAMES: dict[str, str] = {
    "float32": "trtctx_conv2d_f32",
    "float16": "trtctx_conv2d_f16",
    "bfloat16": "trtctx_conv2d_bf16",
}

#: The kernel that polls a host-mapped flag (the lazy-stall scenario).
POLL_KERNEL = "trtctx_poll"

# No #include at all: NVRTC would need the toolkit's headers on disk (cuda_fp16.h), which a
# pip-installed NVRTC does not reliably ship, so half and bfloat16 are converted by hand.
#: The kernels' CUDA C, shipped beside this module as package data (``conv2d.cu``).
CONV_SOURCE = (Path(__file__).with_name("conv2d.cu")).read_text(encoding="utf-8")

_ARCH_RE = re.compile(r"^sm_\d+[a-z]?$")
_PROGRAM_NAME = b"trtctx_conv2d.cu"
_ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class Cubin:
    """A compiled CUBIN image of :data:`CONV_SOURCE` for one architecture.

    ``from_cache`` is True when no NVRTC compile happened in this call (disk cache or in-process
    memo); ``path`` is the cache file holding ``data``, or None when it could not be written.
    """

    arch: str
    data: bytes
    key: str
    from_cache: bool
    path: Path | None


# In-process memo: (cache dir, key) -> Cubin. Keyed by the directory too, so that a call naming
# another cache dir still reads and fills that one.
_MEMO: dict[tuple[str, str], Cubin] = {}


def _nvrtc() -> Any:
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise BackendUnavailable(f"NVRTC (cuda-bindings[all]) is not installed: {exc}") from exc
    return nvrtc


def _check(result: tuple[Any, ...], call: str, arch: str) -> Any:
    """Unwrap a cuda-bindings ``(err, *values)`` tuple, raising KernelCompileError on failure.

    Returns None, the single value, or the tuple of values.
    """
    err, *values = result
    nvrtc = _nvrtc()
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        name = getattr(err, "name", str(err))
        raise KernelCompileError(f"{call} failed for {arch}: {name}")
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return tuple(values)


def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library that :func:`compile_conv` uses."""
    major, minor = _check(_nvrtc().nvrtcVersion(), "nvrtcVersion", "-")
    return int(major), int(minor)


def nvrtc_options(arch: str) -> list[str]:
    """The NVRTC options :func:`compile_conv` passes for ``arch`` (part of the cache key)."""
    return [f"--gpu-architecture={arch}", "-default-device", "--std=c++17"]


def grid_size(total: int) -> int:
    """Blocks of :data:`BLOCK_SIZE` threads for a grid-stride loop over ``total`` elements.

    At least 1 (a zero-block launch is a CUDA error; the kernel's loop simply does nothing) and at
    most :data:`MAX_GRID_BLOCKS` (the loop covers the rest).
    """
    if total < 0:
        raise ValueError(f"grid_size: total must be >= 0, got {total}")
    blocks = (total + BLOCK_SIZE - 1) // BLOCK_SIZE
    return max(1, min(blocks, MAX_GRID_BLOCKS))


def cubin_has_kernel(data: bytes, name: str) -> bool:
    """Whether symbol ``name`` appears NUL-terminated (as in an ELF string table) in ``data``."""
    return b"\x00" + name.encode() + b"\x00" in data


#: A cached cubin file is this magic, the sha256 of the cubin, then the cubin: a file changed
#: after it was written (a flipped byte the ELF check would not see) is recompiled, not loaded.
CACHE_MAGIC = b"TRTCTXCB"


def pack_cached(cubin: bytes) -> bytes:
    """The cache file's bytes for ``cubin``."""
    return CACHE_MAGIC + hashlib.sha256(cubin).digest() + cubin


def unpack_cached(blob: bytes) -> tuple[bytes | None, str]:
    """The cubin a cache file holds, or None and why it cannot be used."""
    head = len(CACHE_MAGIC) + 32
    if len(blob) < head or not blob.startswith(CACHE_MAGIC):
        return None, "not a cache entry of this version"
    data = blob[head:]
    if hashlib.sha256(data).digest() != blob[len(CACHE_MAGIC) : head]:
        return None, "its checksum does not match: changed after it was written"
    if not _is_valid_cubin(data):
        return None, "not a valid ELF with the conv2d kernels"
    return data, ""


def _is_valid_cubin(data: bytes) -> bool:
    """A cheap structural check of a cached file: ELF magic, intact header tables, our kernels.

    Checking that the section and program header tables lie inside the file catches truncation,
    which a magic-only check would miss (the header survives most truncations).
    """
    if len(data) < 64 or not data.startswith(_ELF_MAGIC):
        return False
    ei_class, ei_data = data[4], data[5]
    if ei_class != 2 or ei_data not in (1, 2):  # CUBINs are ELF64
        return False
    order = "<" if ei_data == 1 else ">"
    (e_phoff, e_shoff) = struct.unpack_from(order + "QQ", data, 0x20)
    (e_phentsize, e_phnum, e_shentsize, e_shnum) = struct.unpack_from(order + "HHHH", data, 0x36)
    if e_shoff + e_shentsize * e_shnum > len(data):
        return False
    if e_phoff + e_phentsize * e_phnum > len(data):
        return False
    return all(cubin_has_kernel(data, name) for name in KERNEL_NAMES.values())


def _cache_key(arch: str, version: tuple[int, int], options: list[str]) -> str:
    return digest((CONV_SOURCE, arch, f"{version[0]}.{version[1]}", *options))


def _compile(arch: str, options: list[str]) -> bytes:
    nvrtc = _nvrtc()
    prog = _check(
        nvrtc.nvrtcCreateProgram(CONV_SOURCE.encode(), _PROGRAM_NAME, 0, [], []),
        "nvrtcCreateProgram",
        arch,
    )
    try:
        opts = [o.encode() for o in options]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            log = _program_log(nvrtc, prog, arch)
            name = getattr(err, "name", str(err))
            raise KernelCompileError(
                f"NVRTC could not compile the conv2d kernels for {arch} ({name}); "
                f"options {options}; log:\n{log or '(empty)'}"
            )
        size = int(_check(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize", arch))
        if size == 0:
            raise KernelCompileError(
                f"NVRTC produced an empty CUBIN for {arch} (options {options})"
            )
        buf = b"\x00" * size
        _check(nvrtc.nvrtcGetCUBIN(prog, buf), "nvrtcGetCUBIN", arch)
        return buf
    finally:
        _check(nvrtc.nvrtcDestroyProgram(prog), "nvrtcDestroyProgram", arch)


def _program_log(nvrtc: Any, prog: Any, arch: str) -> str:
    size = int(_check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize", arch))
    if size <= 1:
        return ""
    buf = b" " * size
    _check(nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog", arch)
    return buf.rstrip(b"\x00").decode(errors="replace").strip()


#: The largest cached cubin read back: the conv kernels' cubin is a few KiB per architecture.
MAX_CACHED_BYTES = 64 << 20


def compile_conv(arch: str, *, cache_dir: Path | None = None) -> Cubin:
    """The CUBIN of :data:`CONV_SOURCE` for ``arch`` (``"sm_80"``), from cache or NVRTC.

    The cache file is ``<cache_dir>/cubin/<key>.cubin``, ``key`` being the sha256 of the source,
    the arch, the NVRTC version and the options. A bad cache file is recompiled and replaced with
    a warning; an unwritable cache dir only costs a warning. Raises KernelCompileError for a bad
    arch or a failed compile, BackendUnavailable when NVRTC is not installed.
    """
    if not isinstance(arch, str) or not _ARCH_RE.match(arch):
        raise KernelCompileError(
            f"invalid GPU architecture {arch!r}: expected a real architecture like 'sm_80' or "
            "'sm_90a' (pattern ^sm_\\d+[a-z]?$)"
        )
    options = nvrtc_options(arch)
    key = _cache_key(arch, nvrtc_version(), options)

    root = default_cache_dir() if cache_dir is None else cache_dir
    memo_key = (str(root), key)
    hit = _MEMO.get(memo_key)
    if hit is not None:
        return hit
    path = root / CUBIN_SUBDIR / f"{key}.cubin"

    try:
        cached: bytes | None = storage.read_regular(path, MAX_CACHED_BYTES)
    except storage.UnusableInput as exc:  # a FIFO, a device or a runaway file named like an entry
        cached = None
        warnings.warn(
            f"pytest-trtctx: cached cubin unusable ({exc.strerror}); recompiling",
            RuntimeWarning,
            stacklevel=2,
        )
    except OSError:
        cached = None  # missing, or the dir is unusable (reported below if writing fails too)
    if cached is not None:
        unpacked, why = unpack_cached(cached)
        if unpacked is not None:
            result = Cubin(arch=arch, data=unpacked, key=key, from_cache=True, path=path)
            _MEMO[memo_key] = result
            return result
        warnings.warn(
            f"pytest-trtctx: cached cubin {path} is corrupt ({len(cached)} bytes, {why}); "
            "recompiling and replacing it",
            RuntimeWarning,
            stacklevel=2,
        )

    data = _compile(arch, options)
    written: Path | None = path
    try:
        storage.write_output(path, pack_cached(data), private=True)
    except OSError as exc:
        written = None
        warnings.warn(
            f"pytest-trtctx: cannot write the cubin cache {path} ({exc}); using the compiled "
            "cubin without caching it",
            RuntimeWarning,
            stacklevel=2,
        )
    result = Cubin(arch=arch, data=data, key=key, from_cache=False, path=written)
    _MEMO[memo_key] = replace(result, from_cache=True)  # later calls in this process don't compile
    return result


def clear_memo() -> None:
    """Forget the in-process memo, so the next :func:`compile_conv` consults the disk again."""
    _MEMO.clear()
