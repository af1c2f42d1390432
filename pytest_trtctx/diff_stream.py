"""``pytest-trtctx diff`` of two report files read a piece at a time (``report_stream``).

The same comparison as ``cli.compare`` on two loaded reports, and the same :class:`Diff`, by
another route: the old report becomes an index of what the comparison needs of each test (its
name, its outcome, the text of its output hashes: a few dozen bytes where a parsed record takes
kilobytes), the new report is compared with it record by record as it is read, and only what
differs is kept. A million tests of each are compared in seconds, in a few hundred megabytes.

A report this route does not take (``report_stream.Unstreamable``: a problem ``load`` names, a
name that two of its tests share) is left to the caller, who compares the loaded reports.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import report_text
from .diffing import BAD, GOOD, SKIPPED, Diff, flatten, skip_reason, without_folders
from .report import how_it_ended, run_of
from .report_stream import (
    HASHES,
    KNOWN,
    MESSAGES,
    NODEID,
    OUTCOME,
    SIGNATURE,
    ReportStream,
    Row,
    Unstreamable,
)

#: The outcome text of a test that never ran.
NULL = "null"
#: What the old report's index holds for a test once the new report has met it.
_MET = object()
_GOOD = {json.dumps(o) for o in GOOD}
_BAD = {json.dumps(o) for o in BAD}
_SKIPPED = {json.dumps(o) for o in SKIPPED}
#: Stands for a test that never ran, in a report's stand-in for report.run_of and how_it_ended.
NEVER_RAN = {"nodeid": "", "outcome": None}


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off while millions of small objects come and go (none of
    them in a cycle): its passes over the growing index cost more than the reading."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def stand_in(stream: ReportStream) -> dict[str, Any]:
    """The report as report.run_of and how_it_ended read it: its fields, and as many tests that
    never ran as it has (they count no other test)."""
    return {**stream.header, "tests": [NEVER_RAN] * stream.unrun}


class _Index:
    """What the comparison needs of each test of the old report, by name: its outcome's text
    as a code (one character) followed by the text of its output hashes ("" for none)."""

    def __init__(self, path: Path, named: Callable[[str], str]) -> None:
        self.stream = ReportStream(path)
        self.tests: dict[str, Any] = {}
        self.codes: dict[str, str] = {NULL: "\0"}
        self.outcomes: list[str] = [NULL]
        tests, codes = self.tests, self.codes
        for batch in self.stream.batches():
            for row in batch:
                name = named(row[NODEID])
                outcome = row[OUTCOME]
                code = codes.get(outcome) or self._code(outcome)
                hashes = row[HASHES]
                if name in tests:  # two tests named alike: cli.compare names them
                    raise Unstreamable
                tests[name] = code if hashes in ("{}", NULL) else code + hashes

    def _code(self, outcome: str) -> str:
        self.codes[outcome] = chr(len(self.outcomes))
        self.outcomes.append(outcome)
        return self.codes[outcome]


def _decoder(named: Callable[[str], str]) -> Callable[[str], str]:
    """A name from a row's node id (its JSON content, escapes kept) as ``named`` names it."""

    def name(content: str) -> str:
        return named(report_text.content(content))

    return name


def _hash_rows(was: str, now: str) -> tuple[int, list[tuple[str, str, str]]]:
    """How many output hashes two tests share, and those that changed (output name, old hash,
    new hash), in cli.compare's order (by output name)."""
    old = report_text.hashes(was) if was else {}
    new = {} if now in ("{}", NULL) else report_text.hashes(now)
    shared = sorted(set(old) & set(new))
    return len(shared), [(o, old[o], new[o]) for o in shared if old[o] != new[o]]


def compare_files(
    old: Path,
    new: Path,
    *,
    strict_hashes: bool = False,
    ignore_folders: bool = False,
    names: tuple[str, str] = ("old", "new"),
) -> Diff:
    """What ``cli.compare(load(old), load(new), ...)`` finds, reading each file once; raises
    :class:`Unstreamable` where that comparison must be made instead."""
    named = _decoder(without_folders if ignore_folders else str)
    with paused_gc():
        before = _Index(old, named)
        after = ReportStream(new)
        walk = _Walk(Diff(strict_hashes=strict_hashes), before, names)
        for batch in after.batches():
            for row in batch:
                walk.test(row, named(row[NODEID]))
        return walk.finish(after)


class _Walk:
    """The new report's tests met one by one, against the old report's index."""

    def __init__(self, diff: Diff, before: _Index, names: tuple[str, str]) -> None:
        self.diff, self.before, self.names = diff, before, names
        self.only_new: set[str] = set()
        #: A test that never ran in either report is compared with nothing: listed as such,
        #: with the report(s) it never ran in (cli.compare's not_run).
        self.not_run: list[tuple[str, str]] = []

    def test(self, row: Row, name: str) -> None:
        """One test of the new report, as cli.compare's loop takes it."""
        diff, before = self.diff, self.before
        packed = before.tests.get(name)
        now_text = row[OUTCOME]
        if packed is None:
            if name in self.only_new:  # two tests of the new report named alike
                raise Unstreamable
            self.only_new.add(name)
            if now_text == NULL:
                self.not_run.append((name, self.names[1]))
            else:
                diff.added.append(name)
            return
        if packed is _MET:  # two tests of the new report named alike
            raise Unstreamable
        before.tests[name] = _MET
        was_text = before.outcomes[ord(packed[0])]
        if now_text == NULL or was_text == NULL:
            texts = (was_text, now_text)
            which = [label for label, t in zip(self.names, texts, strict=True) if t == NULL]
            self.not_run.append((name, " and ".join(which)))
            return
        diff.compared += 1
        diff.same_outcome += was_text == now_text
        known = row[KNOWN]
        status = report_text.value(known).get("status") if known != NULL else None
        if status == "stopped reproducing":
            diff.known_stopped.append((name, str(report_text.value(known).get("order"))))
        elif now_text in _BAD and was_text not in _BAD:
            signature = report_text.value(row[SIGNATURE])
            diff.newly_failing.append((name, str(report_text.value(was_text)), str(signature)))
        elif now_text in _SKIPPED and (was_text in _GOOD or was_text in _BAD):
            why = skip_reason({"messages": report_text.value(row[MESSAGES])})
            diff.newly_skipped.append((name, str(report_text.value(was_text)), why))
        elif now_text in _GOOD and was_text in _BAD:
            diff.newly_passing.append((name, str(report_text.value(now_text))))
        elif now_text in _GOOD and was_text in _SKIPPED:
            diff.newly_running.append((name, str(report_text.value(now_text))))
        was_hashes, now_hashes = packed[1:], row[HASHES]
        if was_hashes == now_hashes:
            diff.hashes_compared += now_hashes.count("\n    ")
        elif was_hashes or now_hashes not in ("{}", NULL):
            count, changed = _hash_rows(was_hashes, now_hashes)
            diff.hashes_compared += count
            diff.hash_changed += [(name, *rest) for rest in changed]

    def finish(self, after: ReportStream) -> Diff:
        """The fields that need both reports whole; every list in cli.compare's order."""
        diff, before = self.diff, self.before
        a: dict[str, Any] = {}
        b: dict[str, Any] = {}
        flatten("", before.stream.header.get("environment", {}), a)
        flatten("", after.header.get("environment", {}), b)
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                diff.environment.append((key, a.get(key), b.get(key)))
        for label, stream in zip(self.names, (before.stream, after), strict=True):
            data = stand_in(stream)
            if not run_of(data).get("complete"):
                diff.incomplete.append((label, how_it_ended(data)))
        for name, packed in before.tests.items():
            if packed is _MET:
                continue
            if packed[0] == "\0":
                self.not_run.append((name, self.names[0]))
            else:
                diff.removed.append(name)
        diff.not_run = sorted(self.not_run)
        diff.added.sort()
        diff.removed.sort()
        for rows in (
            diff.newly_failing,
            diff.newly_passing,
            diff.newly_skipped,
            diff.newly_running,
            diff.known_stopped,
            diff.hash_changed,  # within a test, already by output name: the sort is stable
        ):
            rows.sort(key=_first)
        return diff


def _first(row: tuple[str, ...]) -> str:
    return row[0]
