"""An on-disk cache of serialized engines (plans), safe under concurrent builders.

An engine is built once per spec and worker in every run unless it is cached, and building costs
orders of magnitude more than reading a plan back (``benchmarks/bench_engine_cache.py``). The
cache is keyed by everything that makes one plan differ from another (:func:`key_parts_for`),
hashed with sha256.

Each entry is ``<cache_dir>/engines/<key>.plan``: a small header, then the plan::

    magic  b"TRTCTXEN"     8 bytes
    format u32 LE          FORMAT_VERSION
    length u64 LE          payload bytes
    sha256 32 bytes        of the payload
    klen   u32 LE          then klen bytes: the key parts as canonical JSON
    payload

so that a truncated, corrupt or foreign file, or a file from another format version, is detected
(and rebuilt, with a warning naming the file) rather than handed to a TensorRT runtime, which
would at best refuse it and at worst crash. The key parts are stored, not only their hash, so a
reader can tell what an entry is and a hash collision cannot hand back the wrong engine.

Writers write a temp file in the same directory and ``os.replace`` it into place, so readers only
ever see no file or a whole one. An advisory ``flock`` on ``<key>.lock``
(:func:`pytest_trtctx.storage.locked`) makes concurrent builders of one key wait for the first
instead of all building (where locking is not possible, they all build and the last replace
wins, which is still correct). New cache folders are 0700, entries and locks 0600.

Writes go through :func:`pytest_trtctx.storage.write_output`, reads through
:func:`pytest_trtctx.storage.read_regular` (a FIFO or a device named like an entry is refused).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_trtctx.errors import TrtctxError
from pytest_trtctx.storage import (
    ENGINE_MAGIC,
    ENGINE_SUBDIR,
    digest,
    locked,
    read_regular,
    write_output,
)

if TYPE_CHECKING:
    from pytest_trtctx.engines.spec import ConvSpec

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "CacheEntryError",
    "cache_key",
    "describe_entry",
    "entry_path",
    "get_or_build",
    "key_parts_for",
    "read_entry",
    "write_entry",
]

MAGIC = ENGINE_MAGIC
FORMAT_VERSION = 1
#: The largest entry read back: far above a plan of the matrix's convolutions, bounded so that a
#: device or a runaway file named like an entry cannot fill the memory.
MAX_ENTRY_BYTES = 4 << 30
_HEAD = struct.Struct("<8sIQ32sI")  # magic, format, payload length, sha256, key length


class CacheEntryError(TrtctxError):
    """A cache entry cannot be used; the message says why (truncated, bad checksum, ...)."""


def _canonical(key_parts: Mapping[str, object]) -> bytes:
    """Key parts as canonical JSON (sorted keys, no spaces): the hashed and stored form."""
    try:
        text = json.dumps(key_parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    except (TypeError, ValueError) as exc:
        raise TrtctxError(f"engine cache key parts must be JSON data: {exc}") from exc
    return text.encode()


def cache_key(key_parts: Mapping[str, object]) -> str:
    """The sha256 hex key of ``key_parts`` (the entry's file name)."""
    return digest([_canonical(key_parts).decode()])


def key_parts_for(
    module_name: str,
    module_version: str,
    *,
    cuda_version: str,
    driver_version: str,
    target: str,
    spec: ConvSpec,
    settings: Mapping[str, object],
    weights: str | None = None,
) -> dict[str, object]:
    """The standard key parts of an engine.

    ``target`` is the compute capability built for (``"8.6"``) or ``"portable"`` for a GPU-less
    build for every supported one. ``weights`` is a digest of the weights
    (``backends.tensorrt.weights_digest``): a plan bakes its weights in, so leaving them out
    would hand back an engine with other weights whenever a caller changes them.
    """
    return {
        "backend": module_name,
        "backend_version": module_version,
        "cuda": cuda_version,
        "driver": driver_version,
        "target": target,
        "spec": spec.to_dict(),
        "settings": dict(settings),
        "weights": weights,
        "format": FORMAT_VERSION,
    }


def entry_path(cache_dir: Path, key: str) -> Path:
    """Where the entry of ``key`` lives."""
    return cache_dir / ENGINE_SUBDIR / f"{key}.plan"


def write_entry(path: Path, key_parts: Mapping[str, object], payload: bytes) -> None:
    """Write ``payload`` under its header, atomically."""
    key = _canonical(key_parts)
    head = _HEAD.pack(
        MAGIC, FORMAT_VERSION, len(payload), hashlib.sha256(payload).digest(), len(key)
    )
    write_output(path, head + key + payload, private=True)


def read_entry(path: Path, key_parts: Mapping[str, object]) -> bytes:
    """The payload of the entry at ``path``; CacheEntryError says why it cannot be used.

    OSError (missing file) propagates: a miss is not a corrupt entry.
    """
    data = read_regular(path, MAX_ENTRY_BYTES)
    if len(data) < _HEAD.size:
        raise CacheEntryError(f"truncated header ({len(data)} bytes, need {_HEAD.size})")
    magic, fmt, length, checksum, klen = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise CacheEntryError(f"not an engine cache entry (magic {magic!r})")
    if fmt != FORMAT_VERSION:
        raise CacheEntryError(f"format version {fmt}, this reader knows {FORMAT_VERSION}")
    key_end = _HEAD.size + klen
    if len(data) != key_end + length:
        raise CacheEntryError(
            f"truncated or padded: {len(data)} bytes, header says {key_end + length}"
        )
    if data[_HEAD.size : key_end] != _canonical(key_parts):
        raise CacheEntryError("stored key differs from the requested one (sha256 collision?)")
    payload = data[key_end:]
    if hashlib.sha256(payload).digest() != checksum:
        raise CacheEntryError("payload sha256 mismatch (corrupt)")
    if not payload:
        raise CacheEntryError("empty payload")
    return payload


def _try_read(path: Path, key_parts: Mapping[str, object]) -> bytes | None:
    """The cached payload, or None on a miss; a bad entry is reported and treated as a miss."""
    try:
        return read_entry(path, key_parts)
    except (FileNotFoundError, NotADirectoryError):
        return None  # a miss; an unusable cache dir is reported when writing fails
    except (OSError, CacheEntryError) as exc:
        warnings.warn(
            f"pytest-trtctx: engine cache entry {path} is unusable ({exc}); rebuilding it",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def get_or_build(
    key_parts: Mapping[str, object],
    build: Callable[[], bytes],
    cache_dir: Path,
    *,
    rebuild: bool = False,
) -> tuple[bytes, bool]:
    """The cached plan for ``key_parts`` and True, or ``build()``'s (now cached) plan and False.

    ``rebuild`` ignores (and replaces) an existing entry. A corrupt entry is rebuilt with a
    RuntimeWarning naming the file; an unwritable cache costs a warning, never the build.
    Errors from ``build`` propagate unchanged and leave the cache as it was.
    """
    path = entry_path(cache_dir, cache_key(key_parts))
    if not rebuild:
        hit = _try_read(path, key_parts)
        if hit is not None:
            return hit, True
    with locked(path.with_suffix(".lock"), private=True):
        if not rebuild:
            # Another process may have built it while this one waited for the lock. A corrupt
            # entry was already reported above; read quietly here.
            with contextlib.suppress(OSError, CacheEntryError):
                return read_entry(path, key_parts), True
        payload = bytes(build())
        if not payload:
            raise CacheEntryError("the build returned an empty plan; not caching it")
        try:
            write_entry(path, key_parts, payload)
        except OSError as exc:
            warnings.warn(
                f"pytest-trtctx: cannot write the engine cache entry {path} ({exc}); using the "
                "plan without caching it",
                RuntimeWarning,
                stacklevel=2,
            )
    return payload, False


def describe_entry(path: Path) -> dict[str, Any]:
    """Header fields and stored key parts of an entry, for humans (no checksum verification)."""
    data = path.read_bytes()
    magic, fmt, length, checksum, klen = _HEAD.unpack_from(data)
    key = json.loads(data[_HEAD.size : _HEAD.size + klen])
    return {
        "magic": magic,
        "format": fmt,
        "length": length,
        "sha256": checksum.hex(),
        "key_parts": key,
    }
