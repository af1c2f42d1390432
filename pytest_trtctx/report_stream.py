"""A report read a piece at a time: ``pytest-trtctx diff`` and ``merge`` at fleet size.

``report.load`` reads a whole report into Python objects: for a million tests, gigabytes of
dictionaries. :class:`ReportStream` reads the same file (regular files only, bounded as ``load``
bounds it, gzip told by its first bytes) a piece of text at a time and hands out the ``tests``
list in batches, without ever holding the list: each record either as the match of
``report_text.RECORD`` (a record as the plugin writes it: nothing parsed, its fields read as text)
or, in any other form, as the dictionary :mod:`json` parses, checked as ``load`` checks it. The
other top-level fields are kept (:attr:`ReportStream.header`) and checked at the end as ``load``
checks them.

Each record comes as a row: the JSON text of the fields :data:`ROW` names, as a writer writes
them (``nodeid`` without its quotes), and with ``texts`` the record's whole text. A record of
another form is parsed with :mod:`json` and its row written from the values, so that a row
means the same whatever form the file had.

It never names a problem itself: on anything ``load`` would refuse, and on the few forms it does
not take (a ``tests`` key given twice, say), it raises :class:`Unstreamable`, and the caller reads
the file with ``load``, which names the problem exactly as before (or, for a form this reader
leaves to it, reads it). What this reader accepts, ``load`` accepts, with the same values.
"""

from __future__ import annotations

import codecs
import itertools
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import report_text
from .report import GZIP_MAGIC, MAX_REPORT_BYTES, ReportError, _check_record, check
from .storage import UnusableInput, regular_chunks

#: Text read at a time, by default. A merge of many reports gives each a smaller piece.
CHUNK = 16 << 20
#: A record is tried as the plugin writes it only with at least this much text after its start
#: (or the file's end): one the pattern does not match is then known not to be cut by the end of
#: the text read so far. A longer record is parsed with :mod:`json` (slower, as valid).
AHEAD = 1 << 20
#: After this many records in a row that do not have the plugin's form (another writer's
#: report), the rest are parsed with :mod:`json` without trying the pattern first.
GIVE_UP_AFTER = 64
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_STRING = json.decoder.scanstring  # type: ignore[attr-defined]
#: The fields of a record's row, in order; with ``texts`` the row ends with the record's text
#: (from just after its ``{``, as report_text.RECORD's group 1).
ROW = (
    "nodeid",
    "outcome",
    "outputs_sha256",
    "known_failure",
    "signature",
    "messages",
    "order_applied",
    "spec",
    "trace",
)
#: Then report_text.RECORD's group ``several`` (for the reader's own checks), then the text.
NODEID, OUTCOME, HASHES, KNOWN, SIGNATURE, MESSAGES, APPLIED, SPEC, TRACE, SEVERAL, TEXT = range(11)
Row = tuple[Any, ...]


class Unstreamable(Exception):
    """This report is for ``report.load`` to read: it has a problem ``load`` names exactly, or a
    form this reader leaves to it."""


class ReportStream:
    """One report file, read once: iterate :meth:`batches`, then read :attr:`header`."""

    def __init__(self, path: Path, *, texts: bool = False, chunk: int = CHUNK) -> None:
        self.path = Path(path)
        self.chunk = chunk
        self.texts = texts
        index = report_text.RECORD.groupindex  # groups by number: faster than by name
        named = (*ROW, "several")
        self._groups = tuple(index[n] for n in named) + ((1,) if texts else ())
        #: The top-level fields but ``tests``; complete (and checked) once batches() ends.
        self.header: dict[str, Any] = {}
        self.records = 0
        #: Records whose outcome is null (the test never ran).
        self.unrun = 0
        self._texts = self._decoded()
        self._buf = ""
        self._pos = 0
        self._eof = False

    def _bytes(self) -> Iterator[bytes]:
        try:
            pieces = regular_chunks(self.path, MAX_REPORT_BYTES, self.chunk)
            first = next(pieces, b"")
        except (OSError, UnusableInput):  # missing, not a regular file, too large: load says
            raise Unstreamable from None
        if not first.startswith(GZIP_MAGIC):
            yield first
            yield from pieces
            return
        stream, total = zlib.decompressobj(16 + zlib.MAX_WBITS), 0
        for data in itertools.chain((first,), pieces):
            while data and not stream.eof:
                try:
                    out = stream.decompress(data, self.chunk)
                except zlib.error:
                    raise Unstreamable from None
                total += len(out)
                if total > MAX_REPORT_BYTES:
                    raise Unstreamable
                yield out
                data = stream.unconsumed_tail
            if stream.eof:  # what follows the gzip stream is not read, as load ignores it
                return
        raise Unstreamable  # the gzip stream ends early

    def _decoded(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            for data in self._bytes():
                yield decoder.decode(data)
            yield decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise Unstreamable from None
        except OSError as exc:  # a read that failed midway: load names it
            raise Unstreamable from exc

    def _more(self) -> bool:
        """Append the next piece of text; False at the end of the file."""
        if self._eof:
            return False
        piece = next(self._texts, None)
        if piece is None:
            self._eof = True
            return False
        self._buf = self._buf[self._pos :] + piece
        self._pos = 0
        return True

    def _ahead(self, size: int) -> None:
        while len(self._buf) - self._pos < size and self._more():
            pass

    def _next(self) -> str:
        """The next character that is not JSON whitespace, not consumed ("" at the end)."""
        while True:
            self._pos = _skipped(self._buf, self._pos)
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._more():
                return ""

    def _parse(self, scan: Any, start: int) -> Any:
        """Run ``scan(text, start)`` (a JSON value, or a string's rest) on text that holds the
        whole of it: reading on while it fails or ends at the end of the text read so far
        (a number cut in two reads as a shorter one), each time at least doubling what is held."""
        while True:
            offset = start - self._pos
            try:
                value, end = scan(self._buf, start)
            except RecursionError:
                raise Unstreamable from None
            except (StopIteration, ValueError):
                if self._eof:
                    raise Unstreamable from None
            else:
                if end < len(self._buf) or self._eof:
                    self._pos = end
                    return value
            want = 2 * (len(self._buf) - self._pos) + (1 << 16)
            while len(self._buf) - self._pos < want and self._more():
                pass
            start = self._pos + offset

    def batches(self) -> Iterator[list[Row]]:
        """The records of the ``tests`` list in order, in batches; then the header is checked."""
        if self._next() != "{":
            raise Unstreamable
        self._pos += 1
        seen_tests = False
        char = self._next()
        while char != "}":
            if char != '"':
                raise Unstreamable
            key = self._parse(_STRING, self._pos + 1)
            if self._next() != ":":
                raise Unstreamable
            self._pos += 1
            if key == "tests":
                if seen_tests or self._next() != "[":  # given twice, or not a list: for load
                    raise Unstreamable
                seen_tests = True
                self._pos += 1
                yield from self._records()
            else:
                self._next()
                self.header[key] = self._parse(_SCAN, self._pos)
            char = self._next()
            if char == ",":
                self._pos += 1
                char = self._next()
                if char == "}":
                    raise Unstreamable
            elif char != "}":
                raise Unstreamable
        self._pos += 1
        if self._next() != "" or not seen_tests:
            raise Unstreamable
        try:
            check(self.path, {**self.header, "tests": []})
        except ReportError:
            raise Unstreamable from None

    def _records(self) -> Iterator[list[Row]]:
        if self._next() == "]":
            self._pos += 1
            return
        misses = 0
        while True:
            if misses < GIVE_UP_AFTER:
                self._ahead(AHEAD)
                batch = self._matched()
                if batch:
                    misses = 0
                    yield batch
                if self._buf.startswith("\n ]", self._pos):
                    self._pos += 3
                    return
                if not self._eof and len(self._buf) - self._pos < AHEAD:
                    continue  # a record cut by the end of the text read so far
                misses += 1
            if self._next() != "{":
                raise Unstreamable
            record = self._parse(_SCAN, self._pos)
            try:
                _check_record(self.path, self.records, record)
            except ReportError:
                raise Unstreamable from None
            yield [self._row(record)]
            char = self._next()
            self._pos += 1
            if char == "]":
                return
            if char != "," or self._next() in ("]", ""):  # a comma needs a record after it
                raise Unstreamable

    def _matched(self) -> list[Row]:
        """The records from here on that have the plugin's form, up to the first that does not
        (or is cut by the end of the text read so far)."""
        batch: list[Row] = []
        scanner = report_text.RECORD.scanner(self._buf, self._pos)  # type: ignore[attr-defined]
        end, groups, fast, unrun = self._pos, self._groups, 0, 0
        for match in iter(scanner.match, None):
            end = match.end()
            row: Row = match.group(*groups)
            if (
                row[KNOWN] != "null"
                or row[SPEC] != "null"
                or (row[TRACE] is not None and row[TRACE] != "null")
                or row[SEVERAL] is not None
            ) and not _as_written(row):  # valid, but not as a writer writes it: parsed
                row = self._row(self._parsed(match.group(0)))
            else:
                fast += 1
                unrun += row[OUTCOME] == "null"
            batch.append(row)
        self._pos = end
        self.records += fast
        self.unrun += unrun
        return batch

    def _parsed(self, text: str) -> Any:
        try:
            return json.loads(text[: text.rindex("}") + 1])
        except (ValueError, RecursionError):
            raise Unstreamable from None

    def _row(self, record: Any) -> Row:
        """The row of a parsed record, once checked as load checks it."""
        try:
            _check_record(self.path, self.records, record)
        except ReportError:
            raise Unstreamable from None
        self.records += 1
        self.unrun += record.get("outcome") is None
        row: list[Any] = [json.dumps(record["nodeid"])[1:-1]]
        row += [report_text.nested(record.get(name), 3) for name in ROW[1:]]
        row.append(None)  # several: checked
        if self.texts:
            row.append(report_text.record_text(record)[1:])
        return tuple(row)


def _as_written(row: Row) -> bool:
    """Whether a matched record's free-form fields are as a writer writes them (a record without
    any always is)."""
    block = report_text.block
    return (
        (row[KNOWN] == "null" or block(row[KNOWN]))
        and (row[SPEC] == "null" or block(row[SPEC]))
        and (row[TRACE] is None or row[TRACE] == "null" or block(row[TRACE]))
        and (row[SEVERAL] is None or report_text.names_in_order(row[SEVERAL]))
    )


def _skipped(text: str, pos: int) -> int:
    """Where the JSON whitespace from ``pos`` ends."""
    found = _WHITESPACE.match(text, pos)
    return pos if found is None else found.end()
