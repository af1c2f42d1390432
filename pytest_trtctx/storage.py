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
import re
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


#: The files the plugin writes in its cache subfolders, by name: a cache entry named by its
#: sha256 key, the lock beside an engine entry, and an atomic write's temp file.
_OWN_FILES = {
    CUBIN_SUBDIR: re.compile(r"^([0-9a-f]{64}\.cubin|\.[0-9a-f]{64}\.[^/]*\.tmp)$"),
    ENGINE_SUBDIR: re.compile(r"^([0-9a-f]{64}\.(plan|lock)|\.[0-9a-f]{64}\.[^/]*\.tmp)$"),
}
#: What every engine entry starts with (engine_cache.MAGIC): a file named like one without it
#: was not written by the plugin and is left alone.
ENGINE_MAGIC = b"TRTCTXEN"


def _own(sub: str, path: Path) -> bool:
    if not _OWN_FILES[sub].match(path.name) or not path.is_file() or path.is_symlink():
        return False
    if path.suffix == ".plan":
        with open(path, "rb") as fh:
            return fh.read(len(ENGINE_MAGIC)) == ENGINE_MAGIC
    return True


def clear_caches(cache_dir: Path) -> tuple[int, list[str]]:
    """Delete the cache entries the plugin wrote under ``cache_dir``, recognised by name (and,
    for engines, header), and nothing else; a subfolder goes only once it is empty. Returns how
    many files went and the problems met (a read-only or busy cache): never raises for those."""
    removed, problems = 0, []
    for sub in CACHE_SUBDIRS:
        folder = cache_dir / sub
        if not folder.is_dir() or folder.is_symlink():
            continue
        try:
            entries = list(folder.iterdir())
        except OSError as exc:
            problems.append(f"{folder}: cannot be listed ({exc.strerror})")
            continue
        for path in entries:
            try:
                if _own(sub, path):
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another process removed or replaced it meanwhile
                continue
            except OSError as exc:
                problems.append(f"{path}: not removed ({exc.strerror})")
        with contextlib.suppress(OSError):  # not empty (files not ours, or new entries): kept
            folder.rmdir()
    return removed, problems


def path_problem(path: Path, *, folder: bool) -> str | None:
    """Why ``path`` cannot be written to (as a file, or as a ``folder`` to write files in),
    or None. Nothing is created: the nearest existing ancestor must be a writable folder."""
    if path.exists():
        if folder and not path.is_dir():
            return f"{path} is a file, not a folder"
        if not folder and path.is_dir():
            return f"{path} is a folder; give the path of a file in it"
        if not os.access(path, os.W_OK | (os.X_OK if folder else 0)):
            return f"{path} is not writable"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{path} cannot be created: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{path} cannot be created: {parent} is not writable"
    return None


def digest(parts: Iterable[str]) -> str:
    """sha256 hex of length-prefixed parts: no two different part lists hash the same bytes."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` so that readers only ever see no file or the whole file.

    The temp file is in the same directory (``os.replace`` is atomic only within a filesystem);
    concurrent writers each replace the file, the last one winning. ``private``: a cache entry,
    whose new folders are the user's alone (0700) and whose file is the user's (0600): what a
    cache holds is loaded into the GPU as it is, so only its owner may write it
    (docs/reliability.md, "Trust"). Reports and baselines are ordinary files (0644).
    """
    if private:
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        for folder in reversed(missing):  # each new folder 0700, not only the last (mkdir's mode)
            folder.mkdir(mode=0o700, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600 if private else 0o644)
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


def save_json(path: Path, data: dict[str, Any]) -> tuple[Path, str | None]:
    """Write JSON to ``path``; where that fails, to a new file in the temp folder instead, so
    that results are never lost at the end of a run. Returns where it went and, if not to
    ``path``, why."""
    try:
        write_json(path, data)
        return path, None
    except OSError as exc:
        why = f"{path} could not be written ({exc.strerror or exc})"
    fd, fallback = tempfile.mkstemp(prefix=f"pytest-trtctx-{Path(path).stem}-", suffix=".json")
    os.close(fd)
    write_json(Path(fallback), data)
    return Path(fallback), why


def json_problem(exc: json.JSONDecodeError) -> str:
    """Where a JSON text is broken, as messages say it: ``line 3, column 7: Expecting ','``."""
    return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
