"""``pytest-trtctx merge`` of report files read a piece at a time (``report_stream``).

The same merged report as ``merging.merge`` and ``storage.write_json``, byte for byte, by another
route. Reports are written with their tests in node-id order, so the merge reads every report
at once, a piece of each at a time, and takes the tests in node-id order across them: the
records of one test from several reports meet, are judged as ``merging.merge`` judges them, and
one is written on; nothing is held but the pieces being read. A record that the plugin wrote is
copied as its text (``report_text``: it is already what a writer writes); any other is written
from its parsed value. The tests go to a temporary file first: the merged report's ``run``,
which comes before them, is known only once every test has been met.

Errors are raised as ``merging.merge`` raises them, in its order: a report that cannot be read
(``load``'s message: the reports are read again by ``merging.merge``, which names it), then an
incomplete run, then, report by report, another environment or a test whose records conflict.
A report whose tests are not in node-id order (not written by the plugin) is merged by
``merging.merge``.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import itertools
import json
import operator
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ..storage import atomic_file, replaces, write_json, write_output
from . import report_split, report_text
from .merging import (
    SAME_IN_EVERY_JOB,
    IncompleteRun,
    _merged_run,
    _not_applied,
    differences,
    merge,
    merged_settings,
    same_first_backend,
)
from .report import SCHEMA_VERSION, ReportError, how_it_ended, run_of
from .report_stream import NEVER_RAN, ReportStream, Row, Unstreamable, paused_gc, stand_in

#: Text read at a time from all the reports together (each gets its share, at least 1 MiB).
BUDGET = 16 << 20
#: Bytes of the temporary file copied into the output at a time.
COPY = 8 << 20
#: What the merge reads of each record: its text is what it writes.
FIELDS = ("nodeid", "outcome", "text")
NODEID, OUTCOME, TEXT = range(len(FIELDS))
#: The tests list's opening up to its first record's text, and what goes between two records.
_OPEN = b"[\n  {"
_BETWEEN = b",\n  {"
#: The top-level key the tests go under, as json.dumps(indent=1) writes it with no tests.
_TESTS = '\n "tests": []'


def merge_to(paths: Sequence[Path], output: Path, *, allow_incomplete: bool = False) -> None:
    """Write ``merging.merge(paths)`` to ``output`` as ``storage.write_json`` writes it; raise
    what it raises."""
    try:
        with paused_gc():
            _merge_streams(paths, output, allow_incomplete)
    except Unstreamable:
        write_json(output, merge(paths, allow_incomplete=allow_incomplete))


class _Feed:
    """One report's records (or a part's), in node-id order, as (node id, report, position in
    the part, row)."""

    def __init__(self, index: int, stream: ReportStream) -> None:
        self.index = index
        self.stream = stream
        self._batches = self.stream.batches()
        self.pending: list[tuple[str, int, int, Row]] = []
        self.live = True
        self._count = 0
        self._last: str | None = None

    def pull(self) -> None:
        """Add the next batch to ``pending``, or end the feed."""
        batch = next(self._batches, None)
        if batch is None:
            self.live = False
            return
        content, j, start = report_text.content, self.index, self._count
        rows = [
            (row[NODEID] if "\\" not in row[NODEID] else content(row[NODEID]), j, start + i, row)
            for i, row in enumerate(batch)
        ]
        self._count += len(rows)
        ids = [r[0] for r in rows]
        in_order = self._last is None or self._last <= ids[0]
        if not in_order or not all(map(operator.le, ids, itertools.islice(ids, 1, None))):
            raise Unstreamable  # not written by the plugin: merging.merge takes it
        self._last = ids[-1]
        self.pending += rows


class _Part:
    """The merge of the tests of one part (below or from a node id; or all of them): the kept
    records' texts written to ``out``, what merging.merge's verdicts need kept here."""

    def __init__(
        self,
        paths: Sequence[Path],
        parts: Sequence[tuple[int, int | None] | None],
        ids: tuple[str | None, str | None],
        out: IO[bytes],
        head: bool,
    ) -> None:
        chunk = max(BUDGET // len(paths), 1 << 20)
        feeds = [
            _Feed(j, ReportStream(p, FIELDS, chunk=chunk, part=part, ids=ids))
            for j, (p, part) in enumerate(zip(paths, parts, strict=True))
        ]
        self.guess = ""
        if head:  # each report read up to its tests: its fields before them are known
            for feed in feeds:
                while feed.live and not feed.pending:
                    feed.pull()
            self.guess = _frame(paths, [_report(f.stream) for f in feeds], 0)[0]
            out.write(self.guess.encode() + _OPEN)
        self.start = out.tell()
        judge, written = _Judge(paths), 0
        for chunk_ in _in_order(feeds):
            texts = judge.winners(chunk_)
            if texts:
                if written:
                    out.write(_BETWEEN)
                out.write(",\n  {".join(texts).encode())
                written += len(texts)
        out.flush()  # a forked process leaves with os._exit: nothing would flush it then
        self.written = written
        self.conflict = judge.conflict
        self.unrun_dropped = judge.unrun_dropped
        self.headers = [f.stream.header for f in feeds]
        self.unrun = [f.stream.unrun for f in feeds]
        self.records = [f.stream.records for f in feeds]

    def summary(self) -> dict[str, Any]:
        """What the other process needs of a part read in a forked one."""
        return {k: v for k, v in vars(self).items() if k != "guess"}


def _report(stream: ReportStream) -> dict[str, Any]:
    return stand_in(stream.header, stream.unrun)


def _merge_streams(paths: Sequence[Path], output: Path, allow_incomplete: bool) -> None:
    gz = Path(output).suffix == ".gz"
    if replaces(output) and not gz:  # written in place, then put where asked at once
        with atomic_file(output) as out:
            _write(paths, out, allow_incomplete)
        return
    with tempfile.TemporaryFile() as out:  # compressed, or written through what is there
        _write(paths, out, allow_incomplete)
        out.seek(0)
        pieces = iter(functools.partial(out.read, COPY), b"")
        write_output(output, _gzipped(pieces) if gz else pieces)


def _write(paths: Sequence[Path], out: IO[bytes], allow: bool) -> None:
    """The merged report into ``out``, as storage.json_bytes writes merging.merge's report.

    What comes before the tests (the ``run`` above all) is written as the reports' fields say
    it will be once every test has run, and written again in the rare case it is not (a run
    that did not complete, merged with --allow-incomplete): the tests are never held. Where
    the reports split (report_split), the tests from the pivot on are merged at the same time by
    a forked process into a file of their own, copied in after this process's."""
    cut = report_split.split(paths)
    with tempfile.TemporaryFile() as spool:
        if cut is not None:
            below = [(0, stop) for stop, _start in cut.cuts]
            above = [None if start is None else (start, None) for _stop, start in cut.cuts]
            try:
                first, second = report_split.in_two(
                    lambda: vars(_Part(paths, below, (None, cut.pivot), out, True)),
                    lambda: _Part(paths, above, (cut.pivot, None), spool, False).summary(),
                )
            except Unstreamable:  # a part that could not be read so: the whole, in one process
                out.seek(0)
                out.truncate()
            else:
                return _finish(paths, out, allow, [first, second], spool)
        whole = vars(_Part(paths, [(0, None)] * len(paths), (None, None), out, True))
        _finish(paths, out, allow, [whole], None)


def _finish(
    paths: Sequence[Path],
    out: IO[bytes],
    allow: bool,
    parts: list[dict[str, Any]],
    spool: IO[bytes] | None,
) -> None:
    """Raise what merging.merge raises first, else end the merged report: its head written
    again if it is not the one guessed, the second part's tests, the end."""
    headers = report_split.joined_headers(paths, [p["headers"] for p in parts])
    unrun = [sum(p["unrun"][j] for p in parts) for j in range(len(paths))]
    conflicts = [parts[0]["conflict"]]
    if len(parts) > 1 and parts[1]["conflict"] is not None:  # positions from the part's start
        j, position, message = parts[1]["conflict"]
        conflicts.append((j, position + parts[0]["records"][j], message))
    reports = [stand_in(h, u) for h, u in zip(headers, unrun, strict=True)]
    _raise_first(paths, reports, min((c for c in conflicts if c is not None), default=None), allow)
    written = [p["written"] for p in parts]
    merged_unrun = sum(unrun) - sum(p["unrun_dropped"] for p in parts)
    head, tail = _frame(paths, reports, merged_unrun)
    guess, start, total = parts[0]["guess"], parts[0]["start"], sum(written)
    if head != guess or not total:  # the tests written after the guess go behind the real head
        with tempfile.TemporaryFile() as tests:
            out.seek(start)
            shutil.copyfileobj(out, tests, COPY)
            out.seek(0)
            out.truncate()
            out.write(head.encode() + (_OPEN if total else b"[]"))
            tests.seek(0)
            shutil.copyfileobj(tests, out, COPY)
    else:
        out.seek(0, os.SEEK_END)
    if spool is not None and written[1]:
        if written[0]:
            out.write(_BETWEEN)
        _append(spool, out)
    out.write((b"\n ]" if total else b"") + tail.encode())


def _in_order(feeds: list[_Feed]) -> Iterator[list[tuple[str, int, int, Row]]]:
    """The records of every feed in node-id order (the records of one test, from any report,
    together and in report order), a run of them at a time."""
    key = operator.itemgetter(0)
    while True:
        for feed in feeds:
            while feed.live and not feed.pending:
                feed.pull()
        live = [f for f in feeds if f.live]
        # Every record before the smallest last node id held can go: no feed has more of those.
        bound = min(f.pending[-1][0] for f in live) if live else None
        chunk: list[tuple[str, int, int, Row]] = []
        for feed in feeds:
            take = (
                len(feed.pending)
                if bound is None
                else bisect.bisect_left(feed.pending, bound, key=key)
            )
            chunk += feed.pending[:take]
            del feed.pending[:take]
        if chunk:
            chunk.sort(key=key)  # stable: one test's records stay in report order
            yield chunk
        if bound is None:
            return
        for feed in live:  # those that hold the bound may have more of it: read on
            if feed.pending and feed.pending[-1][0] == bound:
                feed.pull()


class _Judge:
    """merging.merge's rule for a test in several reports, and the first conflict it meets."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = paths
        #: The conflict merging.merge raises first: (report, position, message).
        self.conflict: tuple[int, int, str] | None = None
        #: Records of tests that never ran, dropped for another record of the same test.
        self.unrun_dropped = 0

    def winners(self, chunk: list[tuple[str, int, int, Row]]) -> list[str]:
        """The text of the record each test keeps, in node-id order."""
        ids = [c[0] for c in chunk]
        same = list(
            itertools.compress(
                range(1, len(ids)), map(operator.eq, ids, itertools.islice(ids, 1, None))
            )
        )
        texts = [c[3][TEXT] for c in chunk]
        if not same:  # no test in two reports here: every record is kept
            return texts
        dropped: set[int] = set()
        for _first, run in itertools.groupby(enumerate(same), lambda p: p[1] - p[0]):
            at = [i for _n, i in run]
            records = chunk[at[0] - 1 : at[-1] + 1]
            kept = self._kept(records)
            for k, record in enumerate(records, at[0] - 1):
                if record is not kept:
                    dropped.add(k)
                    self.unrun_dropped += record[3][OUTCOME] == "null"
        return [t for k, t in enumerate(texts) if k not in dropped]

    def _kept(self, records: list[tuple[str, int, int, Row]]) -> tuple[str, int, int, Row]:
        """The record merging.merge keeps of one test's records (in report order), judged as it
        judges them; a conflict is noted (the first one merging.merge meets is raised)."""
        texts = {r[3][TEXT] for r in records}
        if len(texts) == 1 and "NaN" not in next(iter(texts)):  # the same record each time
            return records[0]
        parsed = [(r, json.loads("{" + r[3][TEXT])) for r in records]
        seen, first = parsed[0]
        for record, test in parsed[1:]:
            if _not_applied(test) and not _not_applied(first):
                continue
            if _not_applied(first) and not _not_applied(test):
                seen, first = record, test
                continue
            differs = [f for f in SAME_IN_EVERY_JOB if first.get(f) != test.get(f)]
            if differs:
                self._conflict(seen, first, record, test, differs)
                break
        return seen

    def _conflict(
        self,
        seen: Any,
        first: dict[str, Any],
        record: Any,
        test: dict[str, Any],
        differs: list[str],
    ) -> None:
        nodeid, j, position, _row = record
        if self.conflict is not None and self.conflict[:2] <= (j, position):
            return
        message = (
            f"{self.paths[j]}: test {nodeid} is also in {self.paths[seen[1]]} with another "
            + differences(first, test, differs)
        )
        self.conflict = (j, position, message)


def _append(source: IO[bytes], out: IO[bytes]) -> None:
    """All of ``source`` after what ``out`` holds, copied by the kernel where it can."""
    out.flush()
    source.seek(0)
    offset, size = 0, os.fstat(source.fileno()).st_size
    try:
        while offset < size:
            copied = os.copy_file_range(source.fileno(), out.fileno(), size - offset, offset)
            if not copied:
                break
            offset += copied
    except OSError:  # no such copy between these files: through this process
        pass
    out.seek(0, os.SEEK_END)
    source.seek(offset)
    shutil.copyfileobj(source, out, COPY)


def _raise_first(
    paths: Sequence[Path],
    reports: list[dict[str, Any]],
    conflict: tuple[int, int, str] | None,
    allow_incomplete: bool,
) -> None:
    """Raise what merging.merge would raise first, if anything: an incomplete run, then report
    by report another environment or the first conflict among its tests."""
    from .baseline import fingerprint

    for path, data in zip(paths, reports, strict=True):
        if not allow_incomplete and not run_of(data).get("complete"):
            raise IncompleteRun(
                f"{path}: an incomplete run ({how_it_ended(data)}); merge it with "
                "--allow-incomplete, and the tests it never ran stay marked as never run"
            )
    same_first_backend(paths, reports)
    fp = fingerprint(reports[0].get("environment", {}))
    for j, (path, data) in enumerate(zip(paths, reports, strict=True)):
        if fingerprint(data.get("environment", {})) != fp:
            raise ReportError(
                f"{path}: another environment than {paths[0]} (fingerprint differs); "
                "merge reports of one machine and software stack, diff the others"
            )
        if conflict is not None and conflict[0] == j:
            raise ReportError(conflict[2])


def _frame(paths: Sequence[Path], reports: list[dict[str, Any]], unrun: int) -> tuple[str, str]:
    """The merged report's text before its tests and after them, as merging.merge's report
    is written (storage.json_bytes)."""
    merged = {k: v for k, v in reports[0].items() if k != "tests"}
    merged["tests"] = []
    merged["settings"] = merged_settings(reports)
    merged["merged_from"] = [str(p) for p in paths]
    merged["schema"] = SCHEMA_VERSION
    merged["run"] = _merged_run(paths, reports, [NEVER_RAN] * unrun)
    text = json.dumps(merged, indent=1, sort_keys=True, default=str) + "\n"
    at = text.index(_TESTS) + len(_TESTS) - 2
    return text[:at], text[at + 2 :]


def _gzipped(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``gzip.compress(b"".join(pieces), mtime=0)``, a piece at a time (storage.json_bytes)."""
    yield gzip.compress(b"", mtime=0)[:10]  # its header: the same for any content
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    crc = size = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
        size += len(piece)
        yield deflate.compress(piece)
    yield deflate.flush()
    yield struct.pack("<LL", crc, size & 0xFFFFFFFF)
