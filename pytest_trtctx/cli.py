"""``pytest-trtctx``: the command line beside the plugin.

``pytest-trtctx merge A.json B.json -o ALL.json`` combines reports of one environment (one CI job
per order, say) into one.

``pytest-trtctx diff OLD.json NEW.json [--markdown]`` compares two ``--trtctx-report`` files:
what newly fails, what newly skips (a test that ran before and skips now is lost coverage: a backend
that stopped running on this GPU, a driver that went missing), what newly passes, known failures
that stopped reproducing, outputs whose hash changed, tests that appeared or vanished, and what
changed in the environment, after a line that says how much was compared. Exit status: 0 when
nothing regressed, 1 on a regression, 2 on bad input.

An output hash that changed in the *same* environment is a regression (the run is not bitwise
reproducible). One that changed *with* the environment (a new driver, CUDA, library version or GPU
model — :data:`NUMERIC_FIELDS`: every plan and most kernels' rounding change) is listed with the
fields that changed, but is a regression only with ``--strict-hashes``:
otherwise every upgrade would turn CI red, and a red that is always there teaches people to ignore
it. Its checks against the CPU reference still ran; a test whose checks failed is newly failing.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import ReportError, load

GOOD = {"passed", "known-failure", "xfailed"}
BAD = {"failed", "error"}
SKIPPED = {"skipped"}


@dataclass
class Diff:
    newly_failing: list[tuple[str, str, str]] = field(default_factory=list)  # nodeid, was, sig
    newly_passing: list[tuple[str, str]] = field(default_factory=list)
    newly_skipped: list[tuple[str, str, str]] = field(default_factory=list)  # nodeid, was, why
    newly_running: list[tuple[str, str]] = field(default_factory=list)  # nodeid, outcome now
    known_stopped: list[tuple[str, str]] = field(default_factory=list)  # nodeid, order
    hash_changed: list[tuple[str, str, str, str]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    environment: list[tuple[str, Any, Any]] = field(default_factory=list)
    compared: int = 0  # tests in both reports
    same_outcome: int = 0
    hashes_compared: int = 0
    strict_hashes: bool = False

    @property
    def numeric_changes(self) -> list[str]:
        """The environment fields that changed and can change output bits (see NUMERIC_FIELDS)."""
        return [key for key, a, b in self.environment if _changes_numerics(key, a, b)]

    @property
    def hashes_regressed(self) -> bool:
        """A changed hash counts unless software or hardware that computes the outputs changed
        (or always, when asked to): a new kernel version string or a second GPU excuses nothing."""
        return bool(self.hash_changed) and (self.strict_hashes or not self.numeric_changes)

    @property
    def regressed(self) -> bool:
        return bool(
            self.newly_failing or self.newly_skipped or self.known_stopped or self.hashes_regressed
        )


#: Environment fields whose change can change output bits: the driver and CUDA, every library
#: version but Python's, and the model of a GPU present in both runs. Not the OS string, the
#: Python version, or a GPU added or removed (``gpus[1]`` appearing): the computation is the same.
NUMERIC_FIELDS = re.compile(
    r"^(driver|cuda_driver_api|cuda_runtime_torch|versions\.(?!python$).+"
    r"|gpus\[\d+\]\.(name|compute_capability))$"
)


def _changes_numerics(key: str, old: Any, new: Any) -> bool:
    if NUMERIC_FIELDS.match(key) is None:
        return False
    return not key.startswith("gpus[") or (old is not None and new is not None)


def _skip_reason(test: dict[str, Any]) -> str:
    for message in test.get("messages") or []:
        if str(message).startswith("Skipped: "):
            return str(message)[len("Skipped: ") :]
    return "no reason recorded"


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, sub in enumerate(value):
            _flatten(f"{prefix}[{i}]", sub, out)
    else:
        out[prefix] = value


def without_folders(nodeid: str) -> str:
    """A test as it is named wherever its file was collected from (a clone's folder, an
    installed package's): ``tests/regression/test_m.py::test[x]`` is ``test_m.py::test[x]``."""
    path, sep, rest = nodeid.partition("::")
    return path.rsplit("/", 1)[-1] + sep + rest


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
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten("", old.get("environment", {}), a)
    _flatten("", new.get("environment", {}), b)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            diff.environment.append((key, a.get(key), b.get(key)))
    named = without_folders if ignore_folders else str
    before, after = _by(old["tests"], named, names[0]), _by(new["tests"], named, names[1])
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
            diff.newly_skipped.append((nodeid, str(was.get("outcome")), _skip_reason(now)))
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
    verdict = "REGRESSED" if diff.regressed else "no regression"
    lines.append(f"{head}pytest-trtctx diff: {verdict}")
    lines.append(f"{item}old: {code}{old}{code}")
    lines.append(f"{item}new: {code}{new}{code}")
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

    sections: list[tuple[str, int, list[str]]] = [  # title, how many, its lines
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
        ("Tests added", len(diff.added), listed([f"{code}{n}{code}" for n in diff.added])),
        ("Tests removed", len(diff.removed), listed([f"{code}{n}{code}" for n in diff.removed])),
    ]
    for title, count, shown in sections:
        if count:
            lines += ["", f"{'### ' if markdown else ''}{title} ({count})", *shown]
    return "\n".join(lines) + "\n"


#: What must agree where one test is in several reports (a test under no order runs in every
#: per-order job of a suite): then it is one record; else the merge names the conflict.
SAME_IN_EVERY_JOB = ("outcome", "signature", "outputs_sha256", "known_failure")


def _not_applied(test: dict[str, Any]) -> bool:
    return test.get("order_applied") is False and test.get("outcome") == "skipped"


def merge(paths: Sequence[Path]) -> dict[str, Any]:
    """One report from several of one environment (one per CI job, say): tests are combined. A
    test in several reports with the same outcome and hashes is one record; a record skipped
    because its order could not be applied yields to one where it was; any other difference
    fails the merge, naming both reports and what differs. Reports from different environments
    (their fingerprints) are refused."""
    from .baseline import fingerprint

    reports = [load(p) for p in paths]
    merged = dict(reports[0])
    seen: dict[str, tuple[Path, dict[str, Any]]] = {}
    fp = fingerprint(reports[0].get("environment", {}))
    for path, data in zip(paths, reports, strict=True):
        if fingerprint(data.get("environment", {})) != fp:
            raise ReportError(
                f"{path}: another environment than {paths[0]} (fingerprint differs); "
                "merge reports of one machine and software stack, diff the others"
            )
        for test in data["tests"]:
            nodeid = test["nodeid"]
            if nodeid not in seen:
                seen[nodeid] = (path, test)
                continue
            first_path, first = seen[nodeid]
            # With one order selected a plain test runs under it, and skips where that order
            # could not be applied (multi-device on one GPU): such a record says nothing of the
            # test itself, and yields to one from a job where the order was applied.
            if _not_applied(test) and not _not_applied(first):
                continue
            if _not_applied(first) and not _not_applied(test):
                seen[nodeid] = (path, test)
                continue
            differs = [f for f in SAME_IN_EVERY_JOB if first.get(f) != test.get(f)]
            if differs:
                raise ReportError(
                    f"{path}: test {nodeid} is also in {first_path} with another "
                    + ", ".join(
                        f"{f} ({first.get(f)!r} there, {test.get(f)!r} here)" for f in differs
                    )
                )
    merged["tests"] = sorted((test for _path, test in seen.values()), key=lambda t: t["nodeid"])
    merged["settings"] = dict(merged.get("settings", {}))
    merged["settings"]["orders"] = sorted(
        {o for d in reports for o in d.get("settings", {}).get("orders", [])}
    )
    merged["merged_from"] = [str(p) for p in paths]
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    description = __doc__.splitlines()[0].replace("``", "")
    from . import __version__

    parser = argparse.ArgumentParser(prog="pytest-trtctx", description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("diff", help="compare two --trtctx-report files")
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
    m = sub.add_parser("merge", help="combine reports of one environment (one per CI job)")
    m.add_argument("reports", type=Path, nargs="+")
    m.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "merge":
        from .storage import path_problem, write_json

        try:
            problem = path_problem(args.output, folder=False)
            if problem is not None:
                raise ReportError(f"-o: {problem}")
            write_json(args.output, merge(args.reports))
        except ReportError as exc:
            print(f"pytest-trtctx merge: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"pytest-trtctx merge: -o {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"pytest-trtctx merge: {len(args.reports)} reports -> {args.output}")
        return 0
    try:
        old, new = load(args.old), load(args.new)
        diff = compare(
            old,
            new,
            strict_hashes=args.strict_hashes,
            ignore_folders=args.ignore_folders,
            names=(str(args.old), str(args.new)),
        )
    except ReportError as exc:
        print(f"pytest-trtctx diff: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(diff, str(args.old), str(args.new), markdown=args.markdown))
    return 1 if diff.regressed else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
