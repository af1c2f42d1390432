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

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import report_split, report_text
from .diffing import BAD, GOOD, SKIPPED, Diff, compare_headers, skip_reason, without_folders
from .report import how_it_ended, run_of
from .report_stream import ReportStream, Row, Unstreamable, paused_gc, stand_in

#: What the comparison reads of each test of the old report, and of the new one.
OLD_FIELDS = ("nodeid", "outcome", "outputs_sha256")
NEW_FIELDS = (*OLD_FIELDS, "known_failure", "signature", "messages")
NODEID, OUTCOME, HASHES, KNOWN, SIGNATURE, MESSAGES = range(len(NEW_FIELDS))
#: The outcome text of a test that never ran.
NULL = "null"
#: What the old report's index holds for a test once the new report has met it.
_MET = object()
_GOOD = {json.dumps(o) for o in GOOD}
_BAD = {json.dumps(o) for o in BAD}
_SKIPPED = {json.dumps(o) for o in SKIPPED}


class _Index:
    """What the comparison needs of each test of the old report, by name: its outcome's text
    as a code (one character) followed by the text of its output hashes ("" for none)."""

    def __init__(self, stream: ReportStream, named: Callable[[str], str]) -> None:
        self.stream = stream
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
    # Tests matched without their folders are not in node-id order: never split then.
    cut = None if ignore_folders else report_split.split((old, new))
    with paused_gc():
        if cut is not None:
            (old_stop, old_start), (new_stop, new_start) = cut.cuts
            below, above = (None, cut.pivot), (cut.pivot, None)
            try:
                first, second = report_split.in_two(
                    lambda: _Part(old, new, (0, old_stop), (0, new_stop), below, named, names),
                    lambda: _Part(
                        old, new, _from(old_start), _from(new_start), above, named, names
                    ),
                )
            except Unstreamable:  # a part that could not be read so: the whole, in one process
                pass
            else:
                return _joined([first, second], (old, new), strict_hashes, names)
        whole = _Part(old, new, (0, None), (0, None), (None, None), named, names)
        return _joined([whole], (old, new), strict_hashes, names)


def _from(start: int | None) -> tuple[int, None] | None:
    return None if start is None else (start, None)


class _Part:
    """The comparison of the tests of one part (between two node ids; or all of them)."""

    def __init__(
        self,
        old: Path,
        new: Path,
        old_part: tuple[int, int | None] | None,
        new_part: tuple[int, int | None] | None,
        ids: tuple[str | None, str | None],
        named: Callable[[str], str],
        names: tuple[str, str],
    ) -> None:
        before = _Index(ReportStream(old, OLD_FIELDS, part=old_part, ids=ids), named)
        after = ReportStream(new, NEW_FIELDS, part=new_part, ids=ids)
        walk = _Walk(Diff(), before, names)
        for batch in after.batches():
            for row in batch:
                walk.test(row, named(row[NODEID]))
        self.diff = walk.finish()
        self.headers = (before.stream.header, after.header)
        self.unrun = (before.stream.unrun, after.unrun)


def _joined(
    parts: list[_Part], paths: tuple[Path, Path], strict_hashes: bool, names: tuple[str, str]
) -> Diff:
    """One Diff from the parts' (in node-id order: each list stays in order) and what needs
    both reports whole: the environment, whether each run completed."""
    diff = Diff(strict_hashes=strict_hashes)
    for part in parts:
        for key in LISTS:
            getattr(diff, key).extend(getattr(part.diff, key))
        diff.compared += part.diff.compared
        diff.same_outcome += part.diff.same_outcome
        diff.hashes_compared += part.diff.hashes_compared
    headers = report_split.joined_headers(paths, [p.headers for p in parts])
    compare_headers(diff, headers[0], headers[1])
    for i, label in enumerate(names):
        data = stand_in(headers[i], sum(p.unrun[i] for p in parts))
        if not run_of(data).get("complete"):
            diff.incomplete.append((label, how_it_ended(data)))
    return diff


#: The lists of a Diff filled test by test, each in node-id order within a part.
LISTS = (
    "newly_failing",
    "newly_passing",
    "newly_skipped",
    "newly_running",
    "known_stopped",
    "hash_changed",
    "added",
    "removed",
    "not_run",
)


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

    def finish(self) -> Diff:
        """The tests of the old report the new one never met; every list in order."""
        diff, before = self.diff, self.before
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
