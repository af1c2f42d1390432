"""Two processes for one ``diff`` or ``merge``: the tests of every report split at one node id.

Reading a record as the plugin writes it costs a few microseconds (``report_text``'s pattern),
a million tests of two reports several seconds of one core. Reports are written in node-id order,
so one node id (the pivot, taken from the middle of the largest report) splits every report at
a record boundary: the tests below it are read by this process, the others by a forked one, each
reading only its own bytes of each file (``ReportStream``'s ``part``), at the same time.

Only where that is sure to be right: plain (not gzip) files of the plugin's form around the cut,
large enough to pay for a fork, on a machine with a second core, from a process that runs one
thread (a fork of one that runs more can deadlock its child on a lock another thread held: a
malloc arena, the import lock; CPython warns of it since 3.12). Each part checks that every node
id it reads is on its side of the pivot; a part that fails in any way makes the whole read again
in one process (``report_stream.Unstreamable``), which decides as if no split had been tried. The
forked process dies with this one (``PR_SET_PDEATHSIG``) and is reaped here whatever happens.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..isolation import proctree
from . import report_text
from .report import ReportError, check
from .report_text import Unstreamable

#: What lies between two records of the ``tests`` list as the plugin writes it.
MARK = b',\n  {\n   "backend": '
#: The ``tests`` list's start, as the plugin writes it (the first record's ``{`` at its end).
_FIRST = b'\n "tests": [\n  {\n   "backend": '
_NODEID = re.compile(rb'\n   "nodeid": "((?:[^"\\\n]|\\.)*)",\n')
#: Bytes read at a time while looking for a boundary, and the most looked through for one.
WINDOW = 1 << 16
SEARCH = 8 << 20
#: Reports smaller than this in all are read in one process: the fork costs more than it saves.
MIN_BYTES = 64 << 20
T = TypeVar("T")
U = TypeVar("U")


@dataclass(frozen=True)
class Split:
    """Where each report is cut: the first part reads ``(0, stop)``, the second ``(start, None)``
    (``start`` None: the second part reads nothing of that report; ``stop`` None: the first part
    reads all of it)."""

    pivot: str
    cuts: tuple[tuple[int | None, int | None], ...]


def split(paths: Sequence[Path]) -> Split | None:
    """Where to split these reports for two processes, or None where they are read in one."""
    if (os.cpu_count() or 1) < 2 or not one_thread():
        return None
    try:
        fds = [os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY) for p in paths]
    except OSError:
        return None
    try:
        sizes = [os.fstat(fd).st_size for fd in fds]
        if sum(sizes) < MIN_BYTES or not all(os.path.isfile(p) for p in paths):
            return None
        firsts = [_first(fd) for fd in fds]
        if None in firsts:
            return None
        largest = sizes.index(max(sizes))
        middle = _boundary(fds[largest], sizes[largest] // 2)
        if middle is None:
            return None
        pivot = middle[1]
        cuts = []
        for fd, size, first in zip(fds, sizes, firsts, strict=True):
            assert first is not None
            cut = _cut(fd, size, first, pivot)
            if cut is None:
                return None
            cuts.append(cut)
        return Split(pivot, tuple(cuts))
    finally:
        for fd in fds:
            os.close(fd)


def one_thread() -> bool:
    """Whether this process runs one thread (the only one a fork can be trusted from)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no /proc: the threads Python knows of
        return threading.active_count() == 1


def _first(fd: int) -> int | None:
    """Where the first record of the ``tests`` list starts (its ``{``), if written as the
    plugin writes it within the report's first few megabytes."""
    data = os.pread(fd, SEARCH, 0)
    at = data.find(_FIRST)
    return None if at < 0 else at + len(_FIRST) - len(b'{\n   "backend": ')


def _nodeid(data: bytes, start: int) -> str | None:
    """The node id of the record that starts at ``start`` in ``data``."""
    found = _NODEID.search(data, start)
    if found is None or data.find(b"\n  }", start, found.start()) != -1:
        return None  # not in this record (or not within the data read)
    try:
        return report_text.content(found.group(1).decode())
    except (UnicodeDecodeError, ValueError):
        return None


def _boundary(fd: int, at: int) -> tuple[int, str] | None:
    """The first boundary between two records at or after byte ``at`` (where its comma is)
    and the node id of the record after it; None past the last one (or where not found)."""
    for offset in range(at, at + SEARCH, WINDOW):
        data = os.pread(fd, WINDOW + len(MARK), offset)
        found = data.find(MARK)
        if found >= 0:
            record = os.pread(fd, WINDOW, offset + found + 4)
            nodeid = _nodeid(record, 0)
            return None if nodeid is None else (offset + found, nodeid)
        if len(data) < WINDOW + len(MARK):
            return None
    return None


def _cut(fd: int, size: int, first: int, pivot: str) -> tuple[int | None, int | None] | None:
    """Where to cut one report at ``pivot`` (see :class:`Split`), or None where it cannot be."""
    start = _nodeid(os.pread(fd, WINDOW, first), 0)
    if start is None:
        return None
    if start >= pivot:  # every test of this report goes to the second part
        return (first, first)
    low, high = first, size  # the smallest offset whose next boundary's node id >= pivot
    while high - low > 1:
        middle = (low + high) // 2
        found = _boundary(fd, middle)
        if found is None or found[1] >= pivot:
            high = middle
        else:
            low = found[0] + 1
    found = _boundary(fd, low)
    if found is not None and found[1] < pivot:
        found = _boundary(fd, high)
    if found is None:
        return (None, None)  # every test of this report goes to the first part
    if found[1] < pivot:
        return None
    return (found[0], found[0] + len(b",\n  "))


def in_two(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """``first()`` here and ``second()`` in a forked process, at once; their results, or
    Unstreamable where the forked process failed (``first``'s own errors propagate, after the
    forked process is ended and reaped)."""
    parent = os.getpid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the forked process: it never returns from here
        status = 1
        try:
            os.close(read_end)
            proctree.prctl(proctree.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() == parent:  # else its parent died before the line above
                data = pickle.dumps(second(), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_end, "wb") as out:
                    out.write(data)
                status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        try:
            mine = first()
            data = answer.read()
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise
    _pid, status = os.waitpid(pid, 0)
    if status != 0:
        raise Unstreamable
    return mine, pickle.loads(data)


def joined_headers(
    paths: Sequence[Path], parts: Sequence[Sequence[Mapping[str, Any]]]
) -> list[dict[str, Any]]:
    """Each report's header, from what every part read of it (``parts[k][i]``: part k's share
    of report i's). Read in more than one part, it is checked as a whole report's header is as it
    is read; a problem there is :class:`Unstreamable`, for the one-process route to name it."""
    headers = [{k: v for part in parts for k, v in part[i].items()} for i in range(len(paths))]
    if len(parts) > 1:
        for path, header in zip(paths, headers, strict=True):
            try:
                check(path, {**header, "tests": []})
            except ReportError:
                raise Unstreamable from None
    return headers
