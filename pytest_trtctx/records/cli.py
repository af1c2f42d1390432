"""``pytest-trtctx``: the command line beside the plugin.

``pytest-trtctx merge A.json B.json -o ALL.json`` combines reports of one environment (one CI job
per order, say) into one.

``pytest-trtctx diff OLD.json NEW.json [--markdown]`` compares two ``--trtctx-report`` files:
what newly fails, what newly skips (a test that ran before and skips now is lost coverage: a backend
that stopped running on this GPU, a driver that went missing), what newly passes, known failures
that stopped reproducing, outputs whose hash changed, tests that appeared or vanished, and what
changed in the environment, after a line that says how much was compared, and the tests that
never ran because a run was cut short (interrupted, an internal error, ``-x``). Exit status:
:data:`EXIT_OK` when nothing regressed, :data:`EXIT_REGRESSED` on a regression,
:data:`EXIT_BAD_INPUT` on bad input, :data:`EXIT_INCOMPLETE` when nothing regressed among the
tests that ran but a report is of a run that did not complete (0 with ``--allow-incomplete``).
``merge`` refuses an incomplete report with :data:`EXIT_INCOMPLETE` unless ``--allow-incomplete``.

An output hash that changed in the *same* environment is a regression (the run is not bitwise
reproducible). One that changed *with* the environment (a new driver, CUDA, library version or GPU
model — ``diffing.NUMERIC_FIELDS``: every plan and most kernels' rounding change) is listed with
the fields that changed, but is a regression only with ``--strict-hashes``:
otherwise every upgrade would turn CI red, and a red that is always there teaches people to ignore
it. Its checks against the CPU reference still ran; a test whose checks failed is newly failing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .diff_stream import compare_files
from .diffing import BAD, GOOD, SKIPPED, Diff, compare_headers, skip_reason, without_folders
from .html_command import add_parser as add_html_parser
from .html_command import page_of
from .merge_stream import merge_to
from .merging import IncompleteRun
from .report import ReportError, how_it_ended, load, run_of
from .report_stream import Unstreamable

#: Exit statuses of ``diff`` and ``merge`` (docs/report.md).
EXIT_OK = 0
EXIT_REGRESSED = 1
EXIT_BAD_INPUT = 2
EXIT_INCOMPLETE = 3


def _by(
    tests: list[dict[str, Any]], named: Callable[[str], str], where: str
) -> dict[str, dict[str, Any]]:
    """The tests of a report by the name they are compared under."""
    out: dict[str, dict[str, Any]] = {}
    for test in tests:
        name = named(test["nodeid"])
        if name in out:
            raise ReportError(
                f"{where}: {out[name]['nodeid']} and {test['nodeid']} are both {name!r} "
                "without their folders: compare them with their folders (no --ignore-folders)"
            )
        out[name] = test
    return out


def compare(
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    strict_hashes: bool = False,
    ignore_folders: bool = False,
    names: tuple[str, str] = ("old", "new"),
) -> Diff:
    """What changed from ``old`` to ``new``; tests are matched by node id, or with
    ``ignore_folders`` by file name and test (ReportError where that names two tests alike)."""
    diff = Diff(strict_hashes=strict_hashes)
    compare_headers(diff, old, new)
    for name, data in zip(names, (old, new), strict=True):
        if not run_of(data).get("complete"):
            diff.incomplete.append((name, how_it_ended(data)))
    named = without_folders if ignore_folders else str
    before, after = _by(old["tests"], named, names[0]), _by(new["tests"], named, names[1])
    # A test that never ran (the run ended before it) says nothing of the code: it is listed as
    # such and compared with nothing, so that a cut-short run cannot read as "no regression".
    unrun_before = {n for n, t in before.items() if t.get("outcome") is None}
    unrun_after = {n for n, t in after.items() if t.get("outcome") is None}
    for nodeid in sorted(unrun_before | unrun_after):
        which = [
            label
            for label, unrun in zip(names, (unrun_before, unrun_after), strict=True)
            if nodeid in unrun
        ]
        diff.not_run.append((nodeid, " and ".join(which)))
    before = {n: t for n, t in before.items() if n not in unrun_before | unrun_after}
    after = {n: t for n, t in after.items() if n not in unrun_before | unrun_after}
    diff.added = sorted(set(after) - set(before))
    diff.removed = sorted(set(before) - set(after))
    for nodeid in sorted(set(before) & set(after)):
        was, now = before[nodeid], after[nodeid]
        diff.compared += 1
        diff.same_outcome += was.get("outcome") == now.get("outcome")
        known = now.get("known_failure") or {}
        if known.get("status") == "stopped reproducing":
            diff.known_stopped.append((nodeid, str(known.get("order"))))
        elif now.get("outcome") in BAD and was.get("outcome") not in BAD:
            diff.newly_failing.append((nodeid, str(was.get("outcome")), str(now.get("signature"))))
        elif now.get("outcome") in SKIPPED and was.get("outcome") in GOOD | BAD:
            diff.newly_skipped.append((nodeid, str(was.get("outcome")), skip_reason(now)))
        elif now.get("outcome") in GOOD and was.get("outcome") in BAD:
            diff.newly_passing.append((nodeid, str(now.get("outcome"))))
        elif now.get("outcome") in GOOD and was.get("outcome") in SKIPPED:
            diff.newly_running.append((nodeid, str(now.get("outcome"))))
        old_hashes = was.get("outputs_sha256") or {}
        new_hashes = now.get("outputs_sha256") or {}
        for name in sorted(set(old_hashes) & set(new_hashes)):
            diff.hashes_compared += 1
            if old_hashes[name] != new_hashes[name]:
                diff.hash_changed.append((nodeid, name, old_hashes[name], new_hashes[name]))
    return diff


#: Per skip reason, the first nodeids shown; a whole suite that stopped running is one reason.
SKIPS_SHOWN = 10
#: Skip reasons shown (each with its count); the rest are summed in one line.
REASONS_SHOWN = 20
#: Rows shown per section (a CI comment has to stay readable); the JSON reports hold the rest.
ROWS_SHOWN = 50


def _skips(rows: list[tuple[str, str, str]], code: str, item: str) -> list[str]:
    """Newly skipped tests grouped by reason: every reason (up to REASONS_SHOWN) with its count,
    then its first SKIPS_SHOWN nodeids, indented; the section is not cut by ROWS_SHOWN."""
    by_reason: dict[str, list[tuple[str, str]]] = {}
    for nodeid, was, why in rows:
        by_reason.setdefault(why, []).append((nodeid, was))
    lines = []
    groups = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
    for why, tests in groups[:REASONS_SHOWN]:
        lines.append(f"{item}{len(tests)} skipped because: {why}")
        lines.extend(f"  {item}{code}{n}{code} (was {w})" for n, w in tests[:SKIPS_SHOWN])
        if len(tests) > SKIPS_SHOWN:
            lines.append(f"  {item}... and {len(tests) - SKIPS_SHOWN} more")
    rest = groups[REASONS_SHOWN:]
    if rest:
        count = sum(len(tests) for _why, tests in rest)
        lines.append(f"{item}... and {len(rest)} more reasons ({count} tests)")
    return lines


def _hash_title(diff: Diff) -> str:
    changed = diff.numeric_changes
    if not changed:
        return "Outputs whose SHA-256 changed in the same environment (not bitwise reproducible)"
    fields = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
    if diff.strict_hashes:
        return f"Outputs whose SHA-256 changed with {fields} (--strict-hashes: a regression)"
    return f"Outputs whose SHA-256 changed with {fields} (a regression with --strict-hashes)"


def render(diff: Diff, old: str, new: str, *, markdown: bool) -> str:
    lines: list[str] = []
    head = "## " if markdown else ""
    item = "- " if markdown else "  "
    code = "`" if markdown else ""
    if diff.regressed:
        verdict = "REGRESSED"
    elif diff.incomplete:
        verdict = "INCOMPLETE (no regression among the tests that ran)"
    else:
        verdict = "no regression"
    lines.append(f"{head}pytest-trtctx diff: {verdict}")
    lines.append(f"{item}old: {code}{old}{code}")
    lines.append(f"{item}new: {code}{new}{code}")
    for name, how in diff.incomplete:
        lines.append(f"{item}incomplete run: {code}{name}{code}: {how}")
    unchanged = diff.hashes_compared - len(diff.hash_changed)
    lines.append(
        f"{item}compared: {diff.compared} tests in both ({diff.same_outcome} with the same "
        f"outcome), {diff.hashes_compared} output hashes ({unchanged} bitwise identical), "
        f"{len(diff.environment)} environment fields changed"
    )

    def listed(rows: list[str]) -> list[str]:
        shown = [f"{item}{row}" for row in rows[:ROWS_SHOWN]]
        if len(rows) > ROWS_SHOWN:
            shown.append(f"{item}... and {len(rows) - ROWS_SHOWN} more (the JSON reports list all)")
        return shown

    moved = diff.backend_changed
    sections: list[tuple[str, int, list[str]]] = [  # title, how many, its lines
        (
            "Another first backend (each test id ran on one backend there, another here: "
            "not comparable; compare runs whose --trtctx-backend lists the same one first)",
            int(moved is not None),
            [f"{item}{moved[0]} -> {moved[1]}"] if moved is not None else [],
        ),
        (
            "Not run (the run ended before them: compared with nothing)",
            len(diff.not_run),
            listed([f"{code}{n}{code} (never ran in {w})" for n, w in diff.not_run]),
        ),
        (
            "Newly failing",
            len(diff.newly_failing),
            listed([f"{code}{n}{code} (was {w}): {s}" for n, w, s in diff.newly_failing]),
        ),
        (
            "Newly skipped (ran before: coverage lost)",
            len(diff.newly_skipped),
            _skips(diff.newly_skipped, code, item),
        ),
        (
            "Known failures that stopped reproducing",
            len(diff.known_stopped),
            listed([f"{code}{n}{code} under {o}" for n, o in diff.known_stopped]),
        ),
        (
            _hash_title(diff),
            len(diff.hash_changed),
            listed(
                [f"{code}{n}{code} {o}: {a[:16]} -> {b[:16]}" for n, o, a, b in diff.hash_changed]
            ),
        ),
        (
            "Newly passing",
            len(diff.newly_passing),
            listed([f"{code}{n}{code} ({o})" for n, o in diff.newly_passing]),
        ),
        (
            "Newly running (skipped before)",
            len(diff.newly_running),
            listed([f"{code}{n}{code} ({o})" for n, o in diff.newly_running]),
        ),
        (
            "Environment changes",
            len(diff.environment),
            listed([f"{k}: {a!r} -> {b!r}" for k, a, b in diff.environment]),
        ),
        (
            "Settings changes (what the runs were asked to do differently)",
            len(diff.settings),
            listed([f"{code}{k}{code}: {a!r} -> {b!r}" for k, a, b in diff.settings]),
        ),
        ("Tests added", len(diff.added), listed([f"{code}{n}{code}" for n in diff.added])),
        ("Tests removed", len(diff.removed), listed([f"{code}{n}{code}" for n in diff.removed])),
    ]
    for title, count, shown in sections:
        if count:
            lines += ["", f"{'### ' if markdown else ''}{title} ({count})", *shown]
    return "\n".join(lines) + "\n"


def _emit(stream: TextIO, text: str) -> None:
    """Write ``text`` so that any report's text can be shown: what the stream's encoding cannot
    hold (a lone surrogate in a skip reason) is written escaped, never an exception."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(text.encode(encoding, "backslashreplace").decode(encoding, "replace"))


ALLOW_INCOMPLETE_HELP = (
    "a report of a run that did not complete (interrupted, an internal error, -x) is accepted: "
    "its tests that never ran are listed as such (without it: exit 3)"
)
EPILOG = (
    "exit status: 0 no regression; 1 a regression (diff); 2 bad input (a file that is not a "
    "usable report, a bad -o); 3 a report of a run that did not complete, without "
    "--allow-incomplete"
)


def main(argv: Sequence[str] | None = None) -> int:
    description = __doc__.splitlines()[0].replace("``", "")
    from .. import __version__

    parser = argparse.ArgumentParser(prog="pytest-trtctx", description=description, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("diff", help="compare two --trtctx-report files", epilog=EPILOG)
    d.add_argument("old", type=Path)
    d.add_argument("new", type=Path)
    d.add_argument("--markdown", action="store_true", help="Markdown, for a CI comment")
    d.add_argument(
        "--strict-hashes",
        action="store_true",
        help="an output hash that changed with the environment (an upgrade) is a regression too",
    )
    d.add_argument(
        "--ignore-folders",
        action="store_true",
        help="match tests by file name and test, not by the folder they were collected from "
        "(a clone's tests/regression against the installed package's suite)",
    )
    d.add_argument("--allow-incomplete", action="store_true", help=ALLOW_INCOMPLETE_HELP)
    m = sub.add_parser(
        "merge", help="combine reports of one environment (one per CI job)", epilog=EPILOG
    )
    m.add_argument("reports", type=Path, nargs="+")
    m.add_argument("-o", "--output", type=Path, required=True)
    m.add_argument("--allow-incomplete", action="store_true", help=ALLOW_INCOMPLETE_HELP)
    add_html_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "html":
        return _html(args)
    if args.command == "merge":
        return _merge(args.reports, args.output, allow_incomplete=args.allow_incomplete)
    how = {
        "strict_hashes": args.strict_hashes,
        "ignore_folders": args.ignore_folders,
        "names": (str(args.old), str(args.new)),
    }
    try:
        try:  # each file read once, a piece at a time (fleet-size reports)
            diff = compare_files(args.old, args.new, **how)
        except Unstreamable:  # a problem load names, or a report that must be loaded
            diff = compare(load(args.old), load(args.new), **how)
    except ReportError as exc:
        _emit(sys.stderr, f"pytest-trtctx diff: {exc}\n")
        return EXIT_BAD_INPUT
    _emit(sys.stdout, render(diff, str(args.old), str(args.new), markdown=args.markdown))
    if diff.regressed:
        return EXIT_REGRESSED
    return EXIT_INCOMPLETE if diff.incomplete and not args.allow_incomplete else EXIT_OK


def _html(args: argparse.Namespace) -> int:
    try:
        shown = page_of(args, compare, without_folders)
    except ReportError as exc:
        _emit(sys.stderr, f"pytest-trtctx html: {exc}\n")
        return EXIT_BAD_INPUT
    except OSError as exc:
        _emit(sys.stderr, f"pytest-trtctx html: -o {args.output}: {exc.strerror or exc}\n")
        return EXIT_BAD_INPUT
    _emit(sys.stdout, f"pytest-trtctx html: {shown} -> {args.output}\n")
    return EXIT_OK


def _merge(reports: list[Path], output: Path, *, allow_incomplete: bool) -> int:
    from ..storage import path_problem

    try:
        problem = path_problem(output, folder=False)
        if problem is not None:
            raise ReportError(f"-o: {problem}")
        merge_to(reports, output, allow_incomplete=allow_incomplete)
    except IncompleteRun as exc:
        _emit(sys.stderr, f"pytest-trtctx merge: {exc}\n")
        return EXIT_INCOMPLETE
    except ReportError as exc:
        _emit(sys.stderr, f"pytest-trtctx merge: {exc}\n")
        return EXIT_BAD_INPUT
    except OSError as exc:
        _emit(sys.stderr, f"pytest-trtctx merge: -o {output}: {exc.strerror or exc}\n")
        return EXIT_BAD_INPUT
    _emit(sys.stdout, f"pytest-trtctx merge: {len(reports)} reports -> {output}\n")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
