"""``pytest-trtctx merge``: one report from several of one environment (one CI job per order).

A test in several reports with the same outcome and hashes is one record; a record that says
nothing of the test (it never ran, or its order could not be applied) yields to one that does;
any other difference fails the merge, naming both reports and what differs. A report of a run
that did not complete is refused unless asked (``--allow-incomplete``), and the merged report's
``run`` says whether every run completed and every test ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .diffing import first_backend, listed_backends
from .report import FINISHED, SCHEMA_VERSION, ReportError, how_it_ended, load, run_of

#: What must agree where one test is in several reports (a test under no order runs in every
#: per-order job of a suite): then it is one record; else the merge names the conflict.
SAME_IN_EVERY_JOB = ("outcome", "signature", "outputs_sha256", "known_failure")


def _not_applied(test: dict[str, Any]) -> bool:
    """A record that says nothing of the test itself: it never ran (its run ended before it),
    or it skipped because its order could not be applied."""
    return test.get("outcome") is None or (
        test.get("order_applied") is False and test.get("outcome") == "skipped"
    )


class IncompleteRun(ReportError):
    """A report of a run that did not complete, given to ``merge`` without --allow-incomplete."""


def _merged_run(paths: Sequence[Path], reports: list[dict[str, Any]], tests: list[Any]) -> Any:
    """The merged report's ``run``: complete where every run completed and every test ran."""
    runs = [run_of(d) for d in reports]
    cut = [(p, d) for p, d, r in zip(paths, reports, runs, strict=True) if not r.get("complete")]
    statuses = [r["exit_status"] for r in runs if isinstance(r.get("exit_status"), int)]
    unrun = sum(1 for t in tests if t.get("outcome") is None)
    return {
        "complete": not cut and not unrun,
        "exit_status": max(statuses, default=None),
        "ended_by": str(run_of(cut[0][1])["ended_by"]) if cut else FINISHED,
        "detail": "; ".join(f"{p}: {how_it_ended(d)}" for p, d in cut) or None,
        "not_run": unrun,
    }


def differences(first: dict[str, Any], test: dict[str, Any], fields: list[str]) -> str:
    """What differs between two records of one test, in words: each field there and here, a
    mapping by sorted key (a report keeps the order its writer chose, which one field's value
    must not depend on)."""

    def said(value: Any) -> str:
        return repr(dict(sorted(value.items())) if isinstance(value, dict) else value)

    return ", ".join(f"{f} ({said(first.get(f))} there, {said(test.get(f))} here)" for f in fields)


def same_first_backend(paths: Sequence[Path], reports: list[dict[str, Any]]) -> None:
    """Refuse reports whose runs list another backend first: a test id names no first backend
    (``--trtctx-backend=a,b`` keeps a's ids), so one id would stand for two backends' engines."""
    first = first_backend(reports[0])
    for path, data in zip(paths, reports, strict=True):
        if (its := first_backend(data)) != first:
            raise ReportError(
                f"{path}: its run lists backend {its!r} first, {paths[0]}'s "
                f"{first!r}; merge runs that list the same backend first, diff the others"
            )


def merged_settings(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The first report's settings with every report's orders and backends (the first backend
    first: every report lists it first); the isolation mode where all agree, else ``mixed``;
    fast contexts on when any run had them on."""
    each = [d.get("settings") or {} for d in reports]  # an object where present (report.check)
    settings = dict(each[0])
    settings["orders"] = sorted(  # each a list of strings (report.load checks it)
        {o for one in each for o in one.get("orders", [])}
    )
    backends: list[str] = []
    for data in reports:
        backends += [b for b in listed_backends(data) if b not in backends]
    settings["backends"] = backends
    # One isolation mode where every run had it, else "mixed": the tests ran under several.
    # None where no report says (written before the field was): the merge says nothing either.
    modes = {one.get("isolate") for one in each}
    mode = modes.pop() if len(modes) == 1 else "mixed"
    if mode is None:
        settings.pop("isolate", None)
    else:
        settings["isolate"] = mode
    # On when any merged run had it on: its tests then ran with it.
    settings["fast_contexts"] = any(bool(one.get("fast_contexts")) for one in each)
    return settings


def merge(paths: Sequence[Path], *, allow_incomplete: bool = False) -> dict[str, Any]:
    """One report from several of one environment (one per CI job, say): tests are combined. A
    test in several reports with the same outcome and hashes is one record; a record skipped
    because its order could not be applied yields to one where it was; any other difference
    fails the merge, naming both reports and what differs. Reports from different environments
    (their fingerprints) are refused."""
    from .baseline import fingerprint

    reports = [load(p) for p in paths]
    for path, data in zip(paths, reports, strict=True):
        if not allow_incomplete and not run_of(data).get("complete"):
            raise IncompleteRun(
                f"{path}: an incomplete run ({how_it_ended(data)}); merge it with "
                "--allow-incomplete, and the tests it never ran stay marked as never run"
            )
    same_first_backend(paths, reports)
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
                    + differences(first, test, differs)
                )
    merged["tests"] = sorted((test for _path, test in seen.values()), key=lambda t: t["nodeid"])
    merged["settings"] = merged_settings(reports)
    merged["merged_from"] = [str(p) for p in paths]
    merged["schema"] = SCHEMA_VERSION
    merged["run"] = _merged_run(paths, reports, merged["tests"])
    return merged
