"""The HTML page's data: a report's tests laid out as grids, and a diff's changes per cell.

Pure data, no markup (that is :mod:`.html_page`'s). Two kinds of grid:

* **the matrix**, one grid per backend (the one each test ran on, else the run's setting, as
  the summary counts them): a row per scenario and test function, a column per spec of the
  engine matrix, the columns grouped by kernel, dtype and layout;
* **tests without a spec** (a user's own tests under orders): a row per test, a column per
  scenario.

A cell is one test record; its colour is :func:`state_of` the record. The page carries each
record once (messages and signatures through one table of strings, so that a large run stays
small), and a cell names its record by index.

A diff page marks cells from the :class:`~.cli.Diff` that ``pytest-trtctx diff`` prints, so that
the page and the text never disagree; what that diff lists nowhere (an outcome that changed
within the good ones, passed to known failure) is marked as an outcome change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..messages import CELL_STATES, CHANGE_MARKS
from ..scenarios import SCENARIOS
from .diffing import listed_backends
from .report import ReportError, how_it_ended, run_of
from .summary import NO_ORDER

#: How a report's outcome reads as a cell's state (a known failure's status comes first).
STATE_OF_OUTCOME = {
    "passed": "passed",
    "known-failure": "known",
    "failed": "failed",
    "error": "failed",
    "xfailed": "xfailed",
    "skipped": "skipped",
}
#: The grid of the tests that carry no matrix spec.
OWN_TESTS = "tests without a matrix spec"
#: The title's note on a grid whose tests recorded no backend (skipped before choosing one, or
#: tests that run none, as plan builds).
NO_BACKEND_CHOSEN = "the run's setting: none of these tests recorded a backend it ran on"
#: A cell marked by several changes shows the first of these it has.
MARK_PRIORITY = tuple(CHANGE_MARKS)


class DiffLike(Protocol):
    """What the page reads of ``cli.Diff`` (this module sits below the command line)."""

    newly_failing: list[tuple[str, str, str]]
    newly_passing: list[tuple[str, str]]
    newly_skipped: list[tuple[str, str, str]]
    newly_running: list[tuple[str, str]]
    known_stopped: list[tuple[str, str]]
    hash_changed: list[tuple[str, str, str, str]]
    added: list[str]
    removed: list[str]
    environment: list[tuple[str, Any, Any]]
    settings: list[tuple[str, Any, Any]]
    not_run: list[tuple[str, str]]
    incomplete: list[tuple[str, str]]

    @property
    def hashes_regressed(self) -> bool: ...

    @property
    def regressed(self) -> bool: ...


def state_of(test: dict[str, Any], where: str = "report") -> str:
    """A test's cell state (a key of ``names.CELL_STATES``); ReportError on an unknown outcome."""
    outcome = test.get("outcome")
    if outcome is None:
        return "notrun"
    if (test.get("known_failure") or {}).get("status") == "stopped reproducing":
        return "gone"
    state = STATE_OF_OUTCOME.get(str(outcome))
    if state is None:
        raise ReportError(
            f"{where}: test {test['nodeid']}: outcome {outcome!r} is not one of "
            f"{', '.join(STATE_OF_OUTCOME)} (or null)"
        )
    return state


def _drop_param(params: str, token: str) -> str:
    """A test id's parameters without one of them (``driver-first-3`` less ``driver-first``)."""
    if not token:
        return params
    if params == token:
        return ""
    if params.startswith(token + "-"):
        return params[len(token) + 1 :]
    if params.endswith("-" + token):
        return params[: -len(token) - 1]
    return params.replace(f"-{token}-", "-", 1)


def row_label(nodeid: str, drop: Iterable[str], *, function_only: bool) -> str:
    """A test as its row names it: its scenario and spec taken out of its id, so that the same
    test under every order is one row. ``function_only``: without the file."""
    path, sep, name = nodeid.rpartition("::")
    function, bracket, params = name.partition("[")
    params = params[:-1] if bracket and params.endswith("]") else params
    for token in drop:
        params = _drop_param(params, token)
    shown = function + (f"[{params}]" if params else "")
    return shown if function_only or not sep else f"{path}::{shown}"


def spec_groups(spec: dict[str, Any]) -> list[str]:
    """A spec's column headings, outermost first: kernel, dtype, layout."""

    def pair(key: str) -> str:
        value = spec.get(key)
        if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
            return str(value[0])
        return "x".join(map(str, value)) if isinstance(value, list) else str(value)

    kernel = f"k{pair('kernel')} s{pair('stride')} d{pair('dilation')} g{spec.get('groups')}"
    layout = (
        f"b{spec.get('batch')} {spec.get('height')}x{spec.get('width')} "
        f"c{spec.get('in_channels')}>{spec.get('out_channels')}"
    )
    return [kernel, str(spec.get("dtype")), layout]


def _scenario_key(scenario: str) -> tuple[int, str]:
    if scenario in SCENARIOS:
        return SCENARIOS.index(scenario), ""
    return (len(SCENARIOS) + (scenario == NO_ORDER), scenario)


class Strings:
    """One table of the page's repeated strings (messages, signatures): a record names each by
    index. A run's thousand tests repeat the same few dozen sentences."""

    def __init__(self) -> None:
        self.table: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: Any) -> int:
        key = str(text)
        if key not in self._index:
            self._index[key] = len(self.table)
            self.table.append(key)
        return self._index[key]


def compact(test: dict[str, Any], state: str, strings: Strings) -> dict[str, Any]:
    """A test record as the page carries it: short keys, repeated text through ``strings``."""
    known = test.get("known_failure") or {}
    trace = test.get("trace")
    out: dict[str, Any] = {
        "n": test["nodeid"],
        "s": state,
        "o": test.get("outcome"),
        "sc": test.get("order") or NO_ORDER,
        "b": test.get("backend"),
        "m": [strings(m) for m in test.get("messages") or []],
        "h": dict(test.get("outputs_sha256") or {}),
        "d": dict(test.get("durations") or {}),
    }
    optional = {
        "sig": strings(test["signature"]) if test.get("signature") else None,
        "k": [known.get("status"), strings(known.get("signature"))] if known else None,
        "sp": (test.get("spec") or {}).get("name"),
        "c": list(test.get("checks") or []) or None,
        "dg": test.get("diagnosis"),
        "f": test.get("fresh"),
        "a": test.get("order_applied"),
        "r": test.get("reruns") or None,
    }
    if isinstance(trace, dict):
        optional["t"] = (
            {"on": True, "mm": list(trace.get("mismatches") or [])}
            if trace.get("on")
            else {"on": False, "why": trace.get("why_off")}
        )
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def grids(
    tests: list[dict[str, Any]], backend_setting: str, states: list[str]
) -> list[dict[str, Any]]:
    """The grids of ``tests`` (a cell: the test's index in ``tests``); ``states`` its states."""
    matrix: dict[str, dict[tuple[str, str], dict[str, int]]] = {}
    columns: dict[str, dict[str, list[str]]] = {}
    own: dict[str, dict[str, int]] = {}
    own_columns: set[str] = set()
    chose: dict[str, bool] = {}  # per grid: whether any of its tests chose its backend
    for index, test in enumerate(tests):
        scenario = test.get("order") or NO_ORDER
        spec = test.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            backend = test.get("backend") or backend_setting
            chose[backend] = chose.get(backend, False) or bool(test.get("backend"))
            label = row_label(test["nodeid"], (scenario, spec["name"]), function_only=True)
            row = matrix.setdefault(backend, {}).setdefault((scenario, label), {})
            row[spec["name"]] = index
            columns.setdefault(backend, {})[spec["name"]] = spec_groups(spec)
        else:
            label = row_label(test["nodeid"], (scenario,), function_only=False)
            own.setdefault(label, {})[scenario] = index
            own_columns.add(scenario)
    out: list[dict[str, Any]] = []
    for backend in sorted(matrix, key=lambda b: (not chose[b], b)):  # grids that ran first
        specs = sorted(columns[backend], key=lambda n: (columns[backend][n], n))
        rows = sorted(matrix[backend], key=lambda r: (_scenario_key(r[0]), r[1]))
        out.append(
            {
                "title": f"backend {backend}"
                + ("" if chose[backend] else f" ({NO_BACKEND_CHOSEN})"),
                "kind": "matrix",
                "columns": [{"id": n, "groups": columns[backend][n]} for n in specs],
                "rows": [
                    {
                        "scenario": scenario,
                        "label": label,
                        "cells": [matrix[backend][(scenario, label)].get(n, -1) for n in specs],
                    }
                    for scenario, label in rows
                ],
            }
        )
    if own:
        scenarios = sorted(own_columns, key=_scenario_key)
        out.append(
            {
                "title": OWN_TESTS,
                "kind": "own",
                "columns": [{"id": s, "groups": [s]} for s in scenarios],
                "rows": [
                    {
                        "scenario": "",
                        "label": label,
                        "cells": [own[label].get(s, -1) for s in scenarios],
                    }
                    for label in sorted(own)
                ],
            }
        )
    for grid in out:
        grid["counts"] = counts(grid, states)
    return out


def counts(grid: dict[str, Any], states: list[str]) -> dict[str, int]:
    """Cells of each state in a grid (every state, zeros too)."""
    found = dict.fromkeys(CELL_STATES, 0)
    for row in grid["rows"]:
        for cell in row["cells"]:
            if cell >= 0:
                found[states[cell]] += 1
    return found


def header(data: dict[str, Any]) -> list[list[str]]:
    """The environment and the run, as the page's header lists them: label, value."""
    env: dict[str, Any] = data.get("environment") or {}

    def said(key: str) -> str:
        return "not recorded" if env.get(key) is None else str(env[key])

    settings = data.get("settings") or {}
    gpus: list[Any] = env["gpus"] if isinstance(env.get("gpus"), list) else []
    versions: dict[str, Any] = env["versions"] if isinstance(env.get("versions"), dict) else {}
    shown = [
        [
            "GPU",
            "; ".join(
                f"{g.get('index')}: {g.get('name')} (cc {g.get('compute_capability')})"
                for g in gpus
                if isinstance(g, dict)
            )
            or f"none: {said('gpu_error')}",
        ],
        ["driver", f"{said('driver')} (CUDA driver API {said('cuda_driver_api')})"],
        ["torch CUDA", said("cuda_runtime_torch")],
        ["versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))],
        ["backend", ", ".join(listed_backends(data))],
        ["orders", ", ".join(map(str, settings.get("orders") or [])) or "none"],
        ["isolate", str(settings.get("isolate") or "not recorded")],
        # As diff's COMPARED_SETTINGS: a report written before the field ran without it.
        ["fast contexts", "on" if settings.get("fast_contexts") else "off"],
        ["OS", f"{said('os')}, Python {said('python')}"],
        [
            "run",
            f"{data.get('created')}, {data.get('duration_s')} s, pytest-trtctx "
            f"{data.get('plugin_version')}",
        ],
    ]
    merged = data.get("merged_from")
    if isinstance(merged, list):
        shown.append(["merged from", ", ".join(map(str, merged))])
    return shown


def run_data(data: dict[str, Any], where: str) -> dict[str, Any]:
    """A run page's data from one report (``where`` names it in errors and on the page)."""
    tests = list(data["tests"])
    states = [state_of(t, where) for t in tests]
    strings = Strings()
    run = run_of(data)
    return {
        "title": f"pytest-trtctx run, {data.get('created')}",
        "source": where,
        "header": header(data),
        "incomplete": None if run.get("complete") else how_it_ended(data),
        "states": CELL_STATES,
        "grids": grids(tests, str((data.get("settings") or {}).get("backend") or "auto"), states),
        "tests": [compact(t, s, strings) for t, s in zip(tests, states, strict=True)],
        "strings": strings.table,
        "diff": None,
    }


def _marks(diff: DiffLike) -> dict[str, list[list[str]]]:
    """Per test (as the diff names it), its marks: [kind, what changed, "1" if a regression]."""
    marks: dict[str, list[list[str]]] = {}

    def mark(name: str, kind: str, text: str, regression: bool) -> None:
        marks.setdefault(name, []).append([kind, text, "1" if regression else ""])

    for name, was, sig in diff.newly_failing:
        mark(name, "regressed", f"newly failing (was {was}): {sig}", True)
    for name, was, why in diff.newly_skipped:
        mark(name, "regressed", f"newly skipped (was {was}): {why}", True)
    for name, order in diff.known_stopped:
        mark(name, "gone", f"known failure under {order} stopped reproducing", True)
    why = (
        "a regression"
        if diff.hashes_regressed
        else "changed with the environment: a regression only with --strict-hashes"
    )
    for name, output, old, new in diff.hash_changed:
        mark(name, "hash", f"{output}: {old[:16]} -> {new[:16]} ({why})", diff.hashes_regressed)
    for name, now in diff.newly_passing:
        mark(name, "fixed", f"newly passing ({now})", False)
    for name, now in diff.newly_running:
        mark(name, "fixed", f"newly running ({now})", False)
    for name in diff.added:
        mark(name, "added", "not in the base report", False)
    for name in diff.removed:
        mark(name, "removed", "not in the new report (shown as it was)", False)
    for name, which in diff.not_run:
        mark(name, "notrun", f"never ran in {which}", False)
    return marks


def diff_data(
    old: dict[str, Any],
    new: dict[str, Any],
    diff: DiffLike,
    names: tuple[str, str],
    named: Callable[[str], str],
) -> dict[str, Any]:
    """A diff page's data: the new report's grid (and the base's tests it lost), each cell marked
    by what changed; ``named`` is how the diff matched tests (by node id, or without folders)."""
    before = {named(t["nodeid"]): t for t in old["tests"]}
    after = {named(t["nodeid"]): t for t in new["tests"]}

    marks = _marks(diff)
    for name in sorted(set(before) & set(after)):
        was, now = before[name].get("outcome"), after[name].get("outcome")
        if name not in marks and None not in (was, now) and was != now:
            marks[name] = [["changed", f"{was} -> {now}", ""]]
    lost = [before[n] for n in sorted(before) if n not in after]
    page = run_data(
        {**new, "tests": [after[n] for n in sorted(after)] + lost}, f"{names[0]} -> {names[1]}"
    )
    shown = [named(t["n"]) for t in page["tests"]]
    cell_marks: dict[str, list[list[str]]] = {}
    for index, name in enumerate(shown):
        if name in marks:
            ordered = sorted(marks[name], key=lambda m: MARK_PRIORITY.index(m[0]))
            cell_marks[str(index)] = ordered
        if name in before and name in after:
            page["tests"][index]["was"] = {
                "o": before[name].get("outcome"),
                "h": dict(before[name].get("outputs_sha256") or {}),
            }
    if diff.regressed:
        verdict = "REGRESSED"
    elif diff.incomplete:
        verdict = "INCOMPLETE (no regression among the tests that ran)"
    else:
        verdict = "no regression"
    page["diff"] = {
        "base": names[0],
        "new": names[1],
        "verdict": verdict,
        "incomplete": [f"{n}: {how}" for n, how in diff.incomplete],
        "environment": [[k, repr(a), repr(b)] for k, a, b in diff.environment],
        "settings": [[k, repr(a), repr(b)] for k, a, b in diff.settings],
        "marks": cell_marks,
        "labels": CHANGE_MARKS,
    }
    page["title"] = f"pytest-trtctx diff: {verdict}"
    return page
