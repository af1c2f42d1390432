"""Where the plugin keeps files, and how it writes them.

The cache folder holds two subfolders the plugin owns: :data:`CUBIN_SUBDIR` (compiled reference
kernels, :mod:`.kernels`) and :data:`ENGINE_SUBDIR` (serialized engines, :mod:`.engine_cache`).
Everything the plugin writes (cache entries, reports, baselines, merged reports) goes through
:func:`write_output`: a regular file (or none) is replaced atomically, so that a reader never sees
half a file; anything else a user names (a symlink, ``/dev/null``, ``/dev/stdout``, a FIFO) is
written through and never replaced. Everything it reads that a user can name (a report, a
baseline, a matrix, a cache entry) goes through :func:`read_regular`: regular files only, bounded
in size, so that a FIFO or a device cannot hang a run or fill its memory. Standard library only.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

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


class UnsafeOutput(OSError):
    """An output path names something a write must not replace or cannot write through (a
    folder, a block device, a socket, a FIFO nobody reads): the message names it."""


class UnusableInput(OSError):
    """An input path names something that is not a regular file (a FIFO, a device, a folder) or
    a file larger than the reader's bound: the message names it and why."""


def make_folders(folder: Path, *, private: bool) -> None:
    """Create ``folder`` and its missing parents: each new one 0700 when ``private`` (a cache,
    whose entries are loaded into the GPU as they are: docs/reliability.md, "Trust"), not only
    the last (``mkdir(parents=True)`` gives the parents the default mode)."""
    if not private:
        folder.mkdir(parents=True, exist_ok=True)
        return
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for each in reversed(missing):
        each.mkdir(mode=0o700, exist_ok=True)


#: What the writers take: the bytes, or their pieces in order (a merged report of millions of
#: tests is written piece by piece, never held whole).
Data = bytes | Iterable[bytes]


def _pieces(data: Data) -> Iterable[bytes]:
    return (data,) if isinstance(data, bytes) else data


def write_atomic(path: Path, data: Data, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` so that readers only ever see no file or the whole file.

    The temp file is in the same directory (``os.replace`` is atomic only within a filesystem);
    concurrent writers each replace the file, the last one winning. ``private``: a cache entry,
    whose new folders are the user's alone (0700) and whose file is the user's (0600).
    Reports and baselines are ordinary files (0644). Callers that write where a user points go
    through :func:`write_output`, which calls this only for a regular file or none.
    """
    with atomic_file(path, private=private) as f:
        for piece in _pieces(data):
            f.write(piece)


@contextlib.contextmanager
def atomic_file(path: Path, *, private: bool = False) -> Iterator[BinaryIO]:
    """The file that :func:`write_atomic` writes, open for a writer that needs to seek in what
    it wrote: it replaces ``path`` when the block ends, and is removed if the block raises."""
    make_folders(path.parent, private=private)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def replaces(path: Path) -> bool:
    """Whether :func:`write_output` replaces ``path`` with a new regular file (there is none, or
    a regular file), rather than writing through what is there."""
    if _own_descriptor(path) is not None:
        return False
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True


def _kind(mode: int) -> str:
    """What a file of ``mode`` is, in words."""
    for test, words in (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return words
    return "not a regular file"


#: Names of one of this process's open descriptors: ``/dev/stdout``, ``/dev/fd/3``,
#: ``/proc/self/fd/1``.
_DESCRIPTOR = re.compile(
    r"^/(dev/(?P<std>stdout|stderr)|dev/fd/(?P<fd>\d+)|proc/(?P<pid>[^/]+)/fd/(?P<pfd>\d+))$"
)


def _own_descriptor(path: Path) -> int | None:
    """The descriptor ``path`` names in this process, or None. Its file is a stream others write
    too (``pytest > log.txt``): it is written through that descriptor, at its position, so that
    the report lands after what was written before it and what comes after does not overwrite
    it, as opening the file anew (at offset 0) would."""
    found = _DESCRIPTOR.match(os.path.abspath(path))
    if found is None:
        return None
    if found["std"]:
        return 1 if found["std"] == "stdout" else 2
    if found["fd"]:
        return int(found["fd"])
    if found["pid"] in ("self", "thread-self", str(os.getpid())):
        return int(found["pfd"])
    return None


def _write_all(fd: int, data: Data) -> None:
    for piece in _pieces(data):
        view = memoryview(piece)
        while view:
            view = view[os.write(fd, view) :]


def _write_through(path: Path, data: Data) -> None:
    """Write into what ``path`` names (following symlinks) without replacing it: a regular file
    is truncated and rewritten, a character device or a FIFO is written to. The open does not block
    (a FIFO nobody reads is refused, not waited on); the writes do, as any writer's."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UnsafeOutput(errno.ENXIO, f"{path}: a FIFO nobody reads (or a socket)") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise UnsafeOutput(errno.EINVAL, f"{path} is {_kind(mode)}: not written")
        os.set_blocking(fd, True)
        if stat.S_ISREG(mode):
            os.ftruncate(fd, 0)
        _write_all(fd, data)
    finally:
        os.close(fd)


def write_output(path: Path, data: Data, *, private: bool = False) -> None:
    """Write ``data`` where a user pointed: the one writer of reports, baselines, merged reports
    and cache entries.

    Only a regular file is ever replaced (atomically, :func:`write_atomic`), and only where none
    exists is one created. Anything else is written through and kept: a symlink (its target is
    written, the link stays), a character device (``/dev/null``, ``/dev/stdout``), a FIFO with a
    reader. A folder, a block device, a socket or a FIFO nobody reads raise :class:`UnsafeOutput`.
    Replacing them instead, as ``os.replace`` would, turns ``/dev/null`` into a regular file
    for everyone on the machine when run as root.
    """
    own = _own_descriptor(path)
    if own is not None:
        for stream in (sys.stdout, sys.stderr):  # what was printed before goes before
            with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
                stream.flush()
        _write_all(own, data)
        return
    try:
        mode: int | None = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is None or stat.S_ISREG(mode):
        write_atomic(path, data, private=private)
    elif stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        _write_through(path, data)
    else:
        raise UnsafeOutput(errno.EINVAL, f"{path} is {_kind(mode)}: not written")


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them.

    Opened without blocking, then checked with ``fstat`` before any read, so that a FIFO never
    blocks the reader and ``/dev/zero`` never fills its memory: :class:`UnusableInput` names the
    path and what it is. FileNotFoundError and other OSErrors propagate (a miss is not a bad file).
    """
    return b"".join(regular_chunks(path, limit))


def regular_chunks(
    path: Path, limit: int, size: int = 1 << 20, *, start: int = 0, stop: int | None = None
) -> Iterator[bytes]:
    """The bytes of the regular file at ``path`` in pieces of at most ``size``, at most ``limit``
    in all, with :func:`read_regular`'s checks (the first raised by the first ``next``): a reader
    of a file of hundreds of megabytes holds one piece at a time. ``start`` and ``stop``: only
    the bytes from offset ``start`` up to ``stop`` (the whole file is still checked)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnusableInput(
                errno.EINVAL, f"{path} is {_kind(info.st_mode)}, not a regular file"
            )
        if info.st_size > limit:
            raise UnusableInput(
                errno.EFBIG, f"{path} is {info.st_size} bytes, more than the {limit} allowed"
            )
        os.set_blocking(fd, True)
        total, left = start, (limit + 1 if stop is None else stop) - start
        if start:
            os.lseek(fd, start, os.SEEK_SET)
        while left > 0 and (chunk := os.read(fd, min(size, limit + 1 - total, left) or 1)):
            total += len(chunk)
            left -= len(chunk)
            if total > limit:  # it grew since fstat
                raise UnusableInput(errno.EFBIG, f"{path} is more than the {limit} bytes allowed")
            yield chunk
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(lock: Path, *, private: bool = False) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on the file ``lock`` (created if missing); yields False where
    locking is impossible (no ``fcntl``, a read-only folder), so callers still work, unlocked.

    The lock file stays: unlinking it while another process waits on it would let a third
    process lock a new file of the same name, and two holders would run at once.
    """
    try:
        import fcntl

        make_folders(lock.parent, private=private)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOCTTY, 0o600 if private else 0o644)
    except (ImportError, OSError):
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def json_bytes(path: Path, data: dict[str, Any]) -> bytes:
    """``data`` as the plugin writes JSON to ``path``: gzip-compressed when the name ends in
    ``.gz`` (what a CI artifact store or a results folder keeps: a report of the whole matrix
    compresses ~13x)."""
    blob = (json.dumps(data, indent=1, sort_keys=True, default=str) + "\n").encode()
    if Path(path).suffix == ".gz":
        blob = gzip.compress(blob, mtime=0)  # mtime 0: the same report gives the same bytes
    return blob


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through :func:`write_output` (see :func:`json_bytes` for ``.gz``)."""
    write_output(path, json_bytes(path, data))


def _why(path: Path, exc: OSError) -> str:
    return f"{path} could not be written ({exc.strerror or exc})"


def save_json(path: Path, data: dict[str, Any]) -> tuple[Path | None, str | None]:
    """Write JSON to ``path``; where that fails, to a new file in the temp folder instead, so
    that results are not lost at the end of a run. Returns where it went (None: nowhere, the
    temp folder failed too, as on a full disk) and, if not to ``path``, why. Never raises
    OSError: a run's summary and its other outputs must not depend on this one."""
    return save_output(path, json_bytes(path, data), ".json", lambda p: json_bytes(p, data))


def save_output(
    path: Path, blob: bytes, suffix: str, again: Callable[[Path], bytes] | None = None
) -> tuple[Path | None, str | None]:
    """Write ``blob`` to ``path`` (:func:`write_output`), else to a new ``suffix`` file in the
    temp folder (``again`` makes its bytes where they depend on the name), as
    :func:`save_json` says. Never raises OSError."""
    try:
        write_output(path, blob)
        return path, None
    except OSError as exc:
        why = _why(path, exc)
    fallback: Path | None = None
    try:
        fd, name = tempfile.mkstemp(prefix=f"pytest-trtctx-{Path(path).stem}-", suffix=suffix)
        os.close(fd)
        fallback = Path(name)
        write_atomic(fallback, again(fallback) if again is not None else blob)
        return fallback, why
    except OSError as exc:
        if fallback is not None:  # an empty or partial file would pass for a result
            with contextlib.suppress(OSError):
                fallback.unlink()
        return None, f"{why}; nor could a copy in the temp folder ({exc.strerror or exc})"


def json_problem(exc: json.JSONDecodeError) -> str:
    """Where a JSON text is broken, as messages say it: ``line 3, column 7: Expecting ','``."""
    return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
