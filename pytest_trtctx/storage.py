"""Where the plugin keeps files, and how it writes them.

The cache folder holds two subfolders the plugin owns: :data:`CUBIN_SUBDIR` (compiled reference
kernels, :mod:`.kernels`) and :data:`ENGINE_SUBDIR` (serialized engines, :mod:`.engine_cache`).
Everything the plugin writes (cache entries, reports, baselines) goes through
:func:`write_atomic`, so that a reader never sees half a file. Standard library only.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CUBIN_SUBDIR = "cubin"
ENGINE_SUBDIR = "engines"
#: The cache subfolders this plugin owns; ``--trtctx-rebuild`` empties these and nothing else.
CACHE_SUBDIRS = (CUBIN_SUBDIR, ENGINE_SUBDIR)


def default_cache_dir() -> Path:
    """``$TRTCTX_CACHE_DIR``, else ``$XDG_CACHE_HOME/pytest-trtctx``, else ``~/.cache/...``."""
    explicit = os.environ.get("TRTCTX_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "pytest-trtctx"
    return Path.home() / ".cache" / "pytest-trtctx"


def clear_caches(cache_dir: Path) -> int:
    """Delete the plugin's cache entries under ``cache_dir`` (nothing else); count them."""
    removed = 0
    for sub in CACHE_SUBDIRS:
        folder = cache_dir / sub
        if folder.is_dir():
            removed += sum(1 for p in folder.iterdir() if p.is_file())
            shutil.rmtree(folder)
    return removed


def digest(parts: Iterable[str]) -> str:
    """sha256 hex of length-prefixed parts: no two different part lists hash the same bytes."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers only ever see no file or the whole file.

    The temp file is in the same directory (``os.replace`` is atomic only within a filesystem);
    concurrent writers each replace the file, the last one winning.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically. A path ending in ``.gz`` is written gzip-compressed (what a CI
    artifact store or a results folder keeps: a report of the whole matrix compresses ~13x)."""
    blob = (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode()
    if Path(path).suffix == ".gz":
        blob = gzip.compress(blob, mtime=0)  # mtime 0: the same report gives the same bytes
    write_atomic(path, blob)
