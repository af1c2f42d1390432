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
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from . import report_text
from .diff_stream import NEVER_RAN, paused_gc, stand_in
from .merging import SAME_IN_EVERY_JOB, IncompleteRun, _merged_run, merge
from .report import SCHEMA_VERSION, ReportError, how_it_ended, run_of
from .report_stream import (
    APPLIED,
    HASHES,
    KNOWN,
    NODEID,
    OUTCOME,
    SIGNATURE,
    TEXT,
    ReportStream,
    Row,
    Unstreamable,
)
from .storage import atomic_file, replaces, write_json, write_output

#: Text read at a time from all the reports together (each gets its share, at least 1 MiB).
BUDGET = 16 << 20
#: Bytes of the temporary file copied into the output at a time.
COPY = 8 << 20
#: The field of a row that holds each of merging.SAME_IN_EVERY_JOB.
_FIELDS = {"outcome": OUTCOME, "signature": SIGNATURE, "outputs_sha256": HASHES,
           "known_failure": KNOWN}  # fmt: skip
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
    """One report's records, in node-id order, as (node id, report, position, row)."""

    def __init__(self, index: int, path: Path, chunk: int) -> None:
        self.index = index
        self.stream = ReportStream(path, texts=True, chunk=max(chunk, 1 << 20))
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


def _merge_streams(paths: Sequence[Path], output: Path, allow_incomplete: bool) -> None:
    feeds = [_Feed(j, p, BUDGET // len(paths)) for j, p in enumerate(paths)]
    gz = Path(output).suffix == ".gz"
    if replaces(output) and not gz:  # written in place, then put where asked at once
        with atomic_file(output) as out:
            _write(feeds, paths, out, allow_incomplete)
        return
    with tempfile.TemporaryFile() as out:  # compressed, or written through what is there
        _write(feeds, paths, out, allow_incomplete)
        out.seek(0)
        pieces = iter(functools.partial(out.read, COPY), b"")
        write_output(output, _gzipped(pieces) if gz else pieces)


def _write(feeds: list[_Feed], paths: Sequence[Path], out: IO[bytes], allow: bool) -> None:
    """The merged report into ``out``, as storage.json_bytes writes merging.merge's report.

    What comes before the tests (the ``run`` above all) is written as the reports' fields say
    it will be once every test has run, and written again in the rare case it is not (a run
    that did not complete, merged with --allow-incomplete): the tests are never held."""
    judge = _Judge(paths)
    for feed in feeds:  # each report read up to its tests: its fields before them are known
        while feed.live and not feed.pending:
            feed.pull()
    guess, _tail = _frame(paths, [stand_in(f.stream) for f in feeds], 0)
    out.write(guess.encode() + b"[\n  {")
    start, written = out.tell(), 0
    for chunk in _in_order(feeds):
        texts = judge.winners(chunk)
        if texts:
            out.write((",\n  {" if written else "").encode() + ",\n  {".join(texts).encode())
            written += len(texts)
    reports = [stand_in(f.stream) for f in feeds]
    judge.raise_first(reports, allow)
    unrun = sum(f.stream.unrun for f in feeds) - judge.unrun_dropped
    head, tail = _frame(paths, reports, unrun)
    if head != guess or not written:
        with tempfile.TemporaryFile() as tests:
            out.seek(start)
            shutil.copyfileobj(out, tests, COPY)
            out.seek(0)
            out.truncate()
            out.write(head.encode() + (b"[\n  {" if written else b"[]"))
            tests.seek(0)
            shutil.copyfileobj(tests, out, COPY)
    out.write((b"\n ]" if written else b"") + tail.encode())


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
        seen = records[0]
        for record in records[1:]:
            if _not_applied(record[3]) and not _not_applied(seen[3]):
                continue
            if _not_applied(seen[3]) and not _not_applied(record[3]):
                seen = record
                continue
            differs = [f for f in SAME_IN_EVERY_JOB if not _same(seen[3], record[3], f)]
            if differs:
                self._conflict(seen, record, differs)
                break
        return seen

    def _conflict(self, seen: Any, record: Any, differs: list[str]) -> None:
        nodeid, j, position, row = record
        if self.conflict is not None and self.conflict[:2] <= (j, position):
            return
        first = seen[3]
        what = (f"{f} ({_value(first, f)!r} there, {_value(row, f)!r} here)" for f in differs)
        message = (
            f"{self.paths[j]}: test {nodeid} is also in {self.paths[seen[1]]} with another "
            + ", ".join(what)
        )
        self.conflict = (j, position, message)

    def raise_first(self, reports: list[dict[str, Any]], allow_incomplete: bool) -> None:
        """Raise what merging.merge would raise first, if anything."""
        from .baseline import fingerprint

        for path, data in zip(self.paths, reports, strict=True):
            if not allow_incomplete and not run_of(data).get("complete"):
                raise IncompleteRun(
                    f"{path}: an incomplete run ({how_it_ended(data)}); merge it with "
                    "--allow-incomplete, and the tests it never ran stay marked as never run"
                )
        fp = fingerprint(reports[0].get("environment", {}))
        for j, (path, data) in enumerate(zip(self.paths, reports, strict=True)):
            if fingerprint(data.get("environment", {})) != fp:
                raise ReportError(
                    f"{path}: another environment than {self.paths[0]} (fingerprint differs); "
                    "merge reports of one machine and software stack, diff the others"
                )
            if self.conflict is not None and self.conflict[0] == j:
                raise ReportError(self.conflict[2])


def _not_applied(row: Row) -> bool:
    """merging._not_applied on a row: the test never ran, or skipped because its order could
    not be applied."""
    outcome: str = row[OUTCOME]
    return outcome == "null" or (row[APPLIED] == "false" and outcome == '"skipped"')


def _value(row: Row, field: str) -> Any:
    return report_text.value(row[_FIELDS[field]])


def _same(a: Row, b: Row, field: str) -> bool:
    """Whether two records hold the same value of ``field`` as Python compares them: the same
    text is the same value (but NaN, never equal to itself); other texts are compared parsed
    (``1`` and ``1.0`` are equal)."""
    x, y = a[_FIELDS[field]], b[_FIELDS[field]]
    if x == y and "NaN" not in x:
        return True
    return bool(_value(a, field) == _value(b, field))


def _frame(paths: Sequence[Path], reports: list[dict[str, Any]], unrun: int) -> tuple[str, str]:
    """The merged report's text before its tests and after them, as merging.merge's report
    is written (storage.json_bytes)."""
    merged = {k: v for k, v in reports[0].items() if k != "tests"}
    merged["tests"] = []
    merged["settings"] = dict(merged.get("settings", {}))
    merged["settings"]["orders"] = sorted(
        {o for d in reports for o in d.get("settings", {}).get("orders", [])}
    )
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
