"""A report read a piece at a time: ``pytest-trtctx diff`` and ``merge`` at fleet size.

``report.load`` reads a whole report into Python objects: for a million tests, gigabytes of
dictionaries. :class:`ReportStream` reads the same file (regular files only, bounded as ``load``
bounds it, gzip told by its first bytes) a piece of text at a time and hands out the ``tests``
list in batches, without ever holding the list: each record either as the match of
``report_text.RECORD`` (a record as the plugin writes it: nothing parsed, its fields read as text)
or, in any other form, as the dictionary :mod:`json` parses, checked as ``load`` checks it. The
other top-level fields are kept (:attr:`ReportStream.header`) and checked at the end as ``load``
checks them.

Each record comes as a row: the JSON text of the fields the caller names (:data:`FIELDS`), as a
writer writes them (``nodeid`` without its quotes; ``text``: the whole record but its first
``{``). A record of another form is parsed with :mod:`json` and its row written from the values,
so that a row means the same whatever form the file had.

It never names a problem itself: on anything ``load`` would refuse, and on the few forms it does
not take (a ``tests`` key given twice, say), it raises :class:`Unstreamable`, and the caller reads
the file with ``load``, which names the problem exactly as before (or, for a form this reader
leaves to it, reads it). What this reader accepts, ``load`` accepts, with the same values.
"""

from __future__ import annotations

import codecs
import gc
import itertools
import json
import operator
import re
import zlib
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..storage import UnusableInput, regular_chunks
from . import report_text
from .report import GZIP_MAGIC, MAX_REPORT_BYTES, ReportError, _check_record, check
from .report_text import Unstreamable as Unstreamable

#: Text read at a time, by default. A merge of many reports gives each a smaller piece.
CHUNK = 4 << 20
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
#: The fields a row can hold: report_text.RECORD's groups of those names, and ``text``.
FIELDS = (
    "nodeid",
    "outcome",
    "outputs_sha256",
    "known_failure",
    "signature",
    "messages",
    "order_applied",
    "text",
)
Row = tuple[Any, ...]
#: What a matched row ends with when the record has nothing more to check: no free-form block
#: (known_failure, spec, trace null or absent) and at most one output.
_PLAIN = {("null", "null", None, None), ("null", "null", "null", None)}
_UNRUN = '\n   "outcome": null,\n'


class ReportStream:
    """One report file, read once: iterate :meth:`batches`, then read :attr:`header`."""

    def __init__(
        self,
        path: Path,
        fields: Sequence[str],
        *,
        chunk: int = CHUNK,
        part: tuple[int, int | None] | None = (0, None),
        ids: tuple[str | None, str | None] = (None, None),
    ) -> None:
        """``part``: read only the bytes from its start (a record of the ``tests`` list, where
        reading starts) to its end (just after a record of the list, where it may end), for a
        process that reads one part of the report (``report_split``); the header is then
        checked by the caller, on the header of every part; None: nothing (a part that holds
        nothing of this report). ``ids``: each record's node id is
        at least the first and less than the second (Unstreamable where one is not)."""
        if len(fields) < 2 or not set(fields) <= set(FIELDS) or fields[0] != "nodeid":
            raise ValueError(f"fields: nodeid, then one or more of {FIELDS}, got {fields}")
        self.path = Path(path)
        self.fields = tuple(fields)
        self.chunk = chunk
        self.part = part
        self.ids = ids
        index = {**report_text.RECORD.groupindex, "text": 1}  # by number: faster than by name
        # Each row as matched ends with the groups the reader checks (see _as_written).
        checked = (*fields, "known_failure", "spec", "trace", "several")
        self._row_of = operator.methodcaller("group", *(index[f] for f in checked))
        self._checked_of = operator.itemgetter(slice(len(fields), None))
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
            start, stop = self.part or (0, 0)
            pieces = regular_chunks(self.path, MAX_REPORT_BYTES, self.chunk, start=start, stop=stop)
            first = next(pieces, b"")
        except (OSError, UnusableInput):  # missing, not a regular file, too large: load says
            raise Unstreamable from None
        if self.part != (0, None) or not first.startswith(GZIP_MAGIC):
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
        if self.part is None:
            return
        seen_tests = self.part[0] > 0
        if seen_tests:  # a part that starts in the list
            if (yield from self._records()):
                return
            char = self._after_value()
        else:
            if self._next() != "{":
                raise Unstreamable
            self._pos += 1
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
                if (yield from self._records()):  # a part that ends in the list
                    return
            else:
                self._next()
                self.header[key] = self._parse(_SCAN, self._pos)
            char = self._after_value()
        self._pos += 1
        if self._next() != "" or not seen_tests:
            raise Unstreamable
        if self.part == (0, None):
            try:
                check(self.path, {**self.header, "tests": []})
            except ReportError:
                raise Unstreamable from None

    def _after_value(self) -> str:
        """After a top-level value: the next key's quote, or the closing brace."""
        char = self._next()
        if char == ",":
            self._pos += 1
            char = self._next()
            if char == "}":
                raise Unstreamable
        elif char != "}":
            raise Unstreamable
        return char

    def _records(self) -> Generator[list[Row], None, bool]:
        """The records of the list; True where the part read ends in it (a cut)."""
        char = self._next()
        if char == "" and self.part and self.part[1] is not None:
            return True
        if char == "]":
            self._pos += 1
            return False
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
                    return False
                if not self._eof and len(self._buf) - self._pos < AHEAD:
                    continue  # a record cut by the end of the text read so far
                misses += 1
            if self._next() != "{":
                raise Unstreamable
            yield [self._row(self._parse(_SCAN, self._pos))]
            char = self._next()
            self._pos += 1
            if char == "]":
                return False
            if char == "" and self.part and self.part[1] is not None:
                return True
            if char != "," or self._next() in ("]", ""):  # a comma needs a record after it
                raise Unstreamable

    def _matched(self) -> list[Row]:
        """The records from here on that have the plugin's form, up to the first that does not
        (or is cut by the end of the text read so far)."""
        scanner = report_text.RECORD.scanner(self._buf, self._pos)  # type: ignore[attr-defined]
        matches = list(iter(scanner.match, None))
        if not matches:
            return []
        start, end = self._pos, matches[-1].end()
        self._pos = end
        rows: list[Row] = list(map(self._row_of, matches))
        if self.ids != (None, None):
            self._within([row[0] for row in rows])
        self.records += len(rows)
        self.unrun += self._buf.count(_UNRUN, start, end)
        plain = map(_PLAIN.__contains__, map(self._checked_of, rows))
        for i in itertools.compress(range(len(rows)), map(operator.not_, plain)):
            if not _as_written(matches[i]):  # valid, not as a writer writes it: parsed
                self.records -= 1
                self.unrun -= matches[i].group("outcome") == "null"
                rows[i] = self._row(self._parsed(matches[i].group(0)))
        return rows

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
        row = tuple(_field_text(record, name) for name in self.fields)
        if self.ids != (None, None):
            self._within([row[0]])
        return row

    def _within(self, ids: list[str]) -> None:
        """Unstreamable unless every node id (as its JSON content) is within ``self.ids``."""
        if "\\" in "".join(ids):
            ids = [report_text.content(i) for i in ids]
        low, high = self.ids
        if (low is not None and min(ids) < low) or (high is not None and max(ids) >= high):
            raise Unstreamable


def _field_text(record: dict[str, Any], name: str) -> str:
    """A field of a parsed record, as a writer writes it (see :data:`FIELDS`)."""
    if name == "nodeid":
        return json.dumps(record["nodeid"])[1:-1]
    if name == "text":
        return report_text.record_text(record)[1:]
    return report_text.nested(record.get(name), 3)


def _as_written(match: re.Match[str]) -> bool:
    """Whether a matched record's free-form fields are as a writer writes them."""
    known, spec, trace, several = match.group("known_failure", "spec", "trace", "several")
    block = report_text.block
    return (
        (known == "null" or block(known))
        and (spec == "null" or block(spec))
        and (trace is None or trace == "null" or block(trace))
        and (several is None or report_text.names_in_order(several))
    )


def _skipped(text: str, pos: int) -> int:
    """Where the JSON whitespace from ``pos`` ends."""
    found = _WHITESPACE.match(text, pos)
    return pos if found is None else found.end()


#: Stands for a test that never ran, in a report's stand-in for report.run_of and how_it_ended.
NEVER_RAN = {"nodeid": "", "outcome": None}


def stand_in(header: dict[str, Any], unrun: int) -> dict[str, Any]:
    """A streamed report as report.run_of and how_it_ended read it: its fields, and as many
    tests that never ran as it has (they count no other test)."""
    return {**header, "tests": [NEVER_RAN] * unrun}


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off while millions of small objects come and go (none of
    them in a cycle): its passes over a growing index cost more than the reading."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
