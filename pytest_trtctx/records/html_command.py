"""``pytest-trtctx html``: the HTML page of saved reports, or of a diff between two.

``pytest-trtctx html REPORT... -o PAGE.html`` writes the page of one run (several reports of one
environment, one per CI job, are merged first, as ``merge`` does); ``pytest-trtctx html --diff
BASE NEW -o PAGE.html`` writes the upgrade page. The diff's verdict comes from the command line's
own ``compare`` (handed in by :mod:`.cli`, which sits above this module), so that the page and
``pytest-trtctx diff`` never disagree. A report of a run that did not complete is shown with a
banner that says how it ended: a page of a cancelled job is still worth reading, and its verdict
(``diff``'s exit status) is not this command's to give.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..storage import path_problem, write_output
from .html_page import diff_page, run_page
from .merging import merge
from .report import ReportError, load

HELP = "a self-contained HTML page of reports (or of a diff: --diff BASE NEW)"
EPILOG = (
    "exit status: 0 written; 2 bad input (a file that is not a usable report, reports of "
    "different environments, a bad -o, neither or both of REPORT and --diff)"
)


def add_parser(sub: Any) -> None:
    """The ``html`` subcommand's arguments."""
    h = sub.add_parser("html", help=HELP, epilog=EPILOG)
    h.add_argument("reports", type=Path, nargs="*", metavar="REPORT")
    h.add_argument("--diff", nargs=2, type=Path, metavar=("BASE", "NEW"))
    h.add_argument("-o", "--output", type=Path, required=True)
    h.add_argument(
        "--strict-hashes",
        action="store_true",
        help="with --diff: an output hash that changed with the environment is a regression too",
    )
    h.add_argument(
        "--ignore-folders",
        action="store_true",
        help="with --diff: match tests by file name and test, not by folder (as diff does)",
    )


def page_of(
    args: argparse.Namespace, compare: Callable[..., Any], named: Callable[[str], str]
) -> str:
    """Write the page ``args`` ask for; what it shows, in words. ReportError on bad input,
    OSError where ``-o`` cannot be written."""
    if bool(args.diff) == bool(args.reports):
        raise ReportError("give either the reports of one run (REPORT...) or --diff BASE NEW")
    problem = path_problem(args.output, folder=False)
    if problem is not None:
        raise ReportError(f"-o: {problem}")
    if args.diff:
        base, new = args.diff
        old_data, new_data = load(base), load(new)
        names = (str(base), str(new))
        diff = compare(
            old_data,
            new_data,
            strict_hashes=args.strict_hashes,
            ignore_folders=args.ignore_folders,
            names=names,
        )
        matched = named if args.ignore_folders else str
        write_output(args.output, diff_page(old_data, new_data, diff, names, matched))
        return f"the diff of {base} and {new}"
    reports = list(args.reports)
    data = load(reports[0]) if len(reports) == 1 else merge(reports, allow_incomplete=True)
    write_output(args.output, run_page(data, ", ".join(map(str, reports))))
    return f"{len(reports)} report{'s' if len(reports) > 1 else ''}"
