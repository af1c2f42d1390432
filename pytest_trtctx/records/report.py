"""The JSON report (``--trtctx-report=PATH``): environment fingerprint and one record per test.

Written by the pytest process at the end of the session from the reports every test's process
sent back, so it is complete whatever the isolation mode. The schema is documented in
``docs/report.md``; :data:`SCHEMA_VERSION` changes whenever a field changes meaning.
"""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path
from typing import Any

import pytest

from ..checks.outcomes import (
    BACKEND_PROPERTY,
    BACKEND_WHY_PROPERTY,
    CHECKS_PROPERTY,
    CONTEXTS_SECTION,
    ENGINE_PROPERTY,
    KNOWN_PROPERTY,
    MESSAGES_PROPERTY,
    NOTE_PROPERTY,
    ORDER_PROPERTY,
    OUTCOME_RANK,
    OUTPUTS_PROPERTY,
    PLAN_PROPERTY,
    SIGNATURE_PROPERTY,
    TRACE_PROPERTY,
    classify,
    properties,
    unsaved,
)
from ..cuda.probe import environment
from ..errors import TrtctxError
from ..settings import plan
from ..settings.config import Settings
from ..storage import UnusableInput, json_problem, read_regular, save_json

#: 2 added the top-level ``run`` record (whether the run completed and how it ended).
SCHEMA_VERSION = 2
#: Schemas :func:`load` reads: a schema 1 report has no ``run``; :func:`run_of` derives it.
READABLE_SCHEMAS = (1, 2)
TOOL = "pytest-trtctx"
#: How a session ended, as the report's ``run.ended_by`` says it.
FINISHED = "finished"
INTERRUPTED = "interrupted"
INTERNAL_ERROR = "internal error"
STOPPED_EARLY = "stopped early"
UNKNOWN = "unknown"


class ReportError(TrtctxError):
    """A report file cannot be used: the message names the file and what is wrong."""


class ReportWriter:
    """Registered when ``--trtctx-report`` is given; collects reports, writes one JSON file."""

    def __init__(self, config: pytest.Config, settings: Settings, path: Path) -> None:
        self.config = config
        self.settings = settings
        self.path = path
        self.tests: dict[str, dict[str, Any]] = {}
        self.started = time.time()
        self.written = ""  # what the terminal summary says of the file
        self.exit_status: int | None = None
        self.ended_by = FINISHED
        self.detail: str | None = None  # what interrupted the run, or the internal error

    def _record(self, nodeid: str) -> dict[str, Any]:
        if nodeid not in self.tests:
            self.tests[nodeid] = {
                "nodeid": nodeid,
                "order": None,
                "backend": None,
                "spec": None,
                "outcome": None,
                "signature": None,
                "known_failure": None,
                "order_applied": None,
                "fresh": None,
                "messages": [],
                "outputs_sha256": {},
                "durations": {},
                "reruns": 0,
            }
        return self.tests[nodeid]

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Every selected test gets its record now, so that one the run never reaches is in the
        report as not run. Read from what the item carries for its reports (its plan's record),
        which a proxy of a test collected in a child carries too (:mod:`.proxy`)."""
        for item in session.items:
            rec = self._record(item.nodeid)
            planned = dict(item.user_properties).get(PLAN_PROPERTY)
            if not isinstance(planned, dict):
                planned = plan.record(item)
            rec["order"] = planned.get("order")
            rec["spec"] = planned.get("spec") or rec["spec"]
            # A backend named for the test (its marker, or one of a list) is its record's until
            # it runs on it: a test that skips before it is chosen is still that backend's.
            if planned.get("named_backend") not in (None, "auto"):
                rec["backend"] = rec["backend"] or planned["named_backend"]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        rec = self._record(report.nodeid)
        if str(report.outcome) == "rerun":  # pytest-rerunfailures: this attempt runs again;
            # the record is the last attempt's (its signature, outputs), as pytest's summary is
            rec["reruns"] = max(rec["reruns"], int(getattr(report, "rerun", 0)) + 1)
            return
        rec["durations"][report.when] = round(report.duration, 6)
        props = properties(report)
        planned = props.get(PLAN_PROPERTY)
        if isinstance(planned, dict):  # from the test's process: an xdist controller has no items
            rec["order"] = planned.get("order")
            rec["spec"] = planned.get("spec") or rec["spec"]
        state = props.get(ORDER_PROPERTY)
        if isinstance(state, dict):
            rec["order_applied"] = bool(state.get("applied"))
            rec["fresh"] = bool(state.get("fresh"))
        if isinstance(props.get(BACKEND_PROPERTY), str):
            rec["backend"] = props[BACKEND_PROPERTY]
        why = props.get(BACKEND_WHY_PROPERTY)
        said = [why] if isinstance(why, str) else []
        if isinstance(props.get(MESSAGES_PROPERTY), list):
            said += [str(m) for m in props[MESSAGES_PROPERTY]]
        if isinstance(props.get(NOTE_PROPERTY), str):
            said.append(props[NOTE_PROPERTY])
        rec["messages"] += [m for m in said if m not in rec["messages"]]
        if isinstance(props.get(OUTPUTS_PROPERTY), dict):
            rec["outputs_sha256"] = props[OUTPUTS_PROPERTY]
        if isinstance(props.get(KNOWN_PROPERTY), dict):
            rec["known_failure"] = props[KNOWN_PROPERTY]
        if isinstance(props.get(SIGNATURE_PROPERTY), str):
            rec["signature"] = props[SIGNATURE_PROPERTY]
        if isinstance(props.get(TRACE_PROPERTY), dict):
            rec["trace"] = props[TRACE_PROPERTY]
        if isinstance(props.get(ENGINE_PROPERTY), dict):
            rec["engine"] = props[ENGINE_PROPERTY]
        if isinstance(props.get(CHECKS_PROPERTY), list):
            rec["checks"] = [str(line) for line in props[CHECKS_PROPERTY]]
        for name, text in report.sections:  # the watch's diagnosis of a failed call
            if name == CONTEXTS_SECTION:
                rec["diagnosis"] = str(text)
        outcome = classify(report)
        if (
            outcome == "skipped"
            and isinstance(report.longrepr, tuple)
            and len(report.longrepr) == 3
        ):
            rec["messages"].append(str(report.longrepr[2]))
        if outcome is not None and OUTCOME_RANK[outcome] >= OUTCOME_RANK.get(rec["outcome"], -1):
            rec["outcome"] = outcome

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        # ^C, SIGTERM/SIGHUP (the plugin turns them into pytest.exit) and pytest.exit in a test.
        self.ended_by = INTERRUPTED
        self.detail = str(getattr(excinfo.value, "msg", "") or excinfo.exconly())

    def pytest_internalerror(self, excrepr: Any, excinfo: Any) -> None:
        self.ended_by = INTERNAL_ERROR
        self.detail = str(excrepr).strip().splitlines()[-1] if str(excrepr).strip() else None

    def run(self) -> dict[str, Any]:
        """Whether the run completed and how it ended: a report of a run cut short must never
        read as a run that passed (``pytest-trtctx diff`` and ``merge`` refuse it unless asked)."""
        not_run = sum(1 for rec in self.tests.values() if rec["outcome"] is None)
        return {
            "complete": self.ended_by == FINISHED and not not_run,
            "exit_status": self.exit_status,
            "ended_by": self.ended_by,
            "detail": self.detail,
            "not_run": not_run,
        }

    def data(self) -> dict[str, Any]:
        from .. import __version__

        s = self.settings
        return {
            "tool": TOOL,
            "schema": SCHEMA_VERSION,
            "plugin_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 3),
            "settings": {
                "orders": list(s.orders.value),
                "isolate": s.isolate.value,
                "backend": s.backend.value,
                "backends": list(s.backends.value),
                "device": s.device.value,
                "fast_contexts": s.fast_contexts.value,
            },
            "environment": environment(),
            "run": self.run(),
            "tests": sorted(self.tests.values(), key=lambda r: str(r["nodeid"])),
        }

    def finish(self, session: pytest.Session) -> None:
        """Record how the session ended (for :meth:`run`), before anything is written."""
        self.exit_status = int(session.exitstatus)
        if self.ended_by == FINISHED and session.shouldfail:  # -x, --maxfail
            self.ended_by, self.detail = STOPPED_EARLY, str(session.shouldfail)
        elif self.ended_by == FINISHED and session.shouldstop:
            self.ended_by, self.detail = STOPPED_EARLY, str(session.shouldstop)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):
            return  # an xdist worker: the controller writes the report
        self.finish(session)
        where, why = save_json(self.path, self.data())
        if why is not None:
            unsaved(session)
        if where is None:
            self.written = f"report NOT written: {why}"
        else:
            self.written = f"report written to {where}" + (f" instead: {why}" if why else "")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written:
            terminalreporter.write_line(f"trtctx: {self.written}")


#: The first bytes of a gzip stream: how :func:`load` tells a compressed report from a plain one.
GZIP_MAGIC = b"\x1f\x8b"
#: The most a report may decompress to: far above any suite's report, far below what a crafted
#: file could make a reader allocate.
MAX_REPORT_BYTES = 512 << 20

#: Each test record's fields and the types they may hold (None: the field may be null).
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "nodeid": (str,),
    "order": (str, type(None)),
    "backend": (str, type(None)),
    "spec": (dict, type(None)),
    "outcome": (str, type(None)),
    "signature": (str, type(None)),
    "known_failure": (dict, type(None)),
    "order_applied": (bool, type(None)),
    "fresh": (bool, type(None)),
    "messages": (list,),
    "trace": (dict, type(None)),
    "engine": (dict, type(None)),
    "checks": (list,),
    "diagnosis": (str, type(None)),
    "outputs_sha256": (dict,),
    "durations": (dict,),
}


def _gunzip(path: Path, blob: bytes) -> bytes:
    import zlib

    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = stream.decompress(blob, MAX_REPORT_BYTES + 1)
    except zlib.error as exc:
        raise ReportError(f"{path}: a damaged gzip file ({exc})") from None
    if len(data) > MAX_REPORT_BYTES or stream.unconsumed_tail:
        raise ReportError(
            f"{path}: decompresses to more than {MAX_REPORT_BYTES >> 20} MiB; not a report"
        )
    if not stream.eof:
        raise ReportError(f"{path}: a damaged gzip file (it ends early)")
    return data


def _check_record(path: Path, index: int, test: Any) -> None:
    if not isinstance(test, dict) or not isinstance(test.get("nodeid"), str):
        raise ReportError(f"{path}: tests[{index}] is not a record with a 'nodeid'")
    for field, types in RECORD_FIELDS.items():
        if field in test and not isinstance(test[field], types):
            allowed = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ReportError(
                f"{path}: tests[{index}] ({test['nodeid']}): field {field!r} must be {allowed}, "
                f"got {type(test[field]).__name__}"
            )
    hashes = test.get("outputs_sha256", {})
    if not all(isinstance(v, str) for v in hashes.values()):
        raise ReportError(f"{path}: tests[{index}] ({test['nodeid']}): hashes must be strings")


def load(path: Path) -> dict[str, Any]:
    """Read and validate a report, plain or gzip-compressed (told by its first bytes, not its
    name); ReportError names the file and the problem."""
    try:
        blob = read_regular(Path(path), MAX_REPORT_BYTES)
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except UnusableInput as exc:
        if exc.errno == errno.EFBIG:
            raise ReportError(
                f"{path}: larger than {MAX_REPORT_BYTES >> 20} MiB; not a report"
            ) from None
        raise ReportError(f"{exc.strerror}; not a report") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot be read ({exc.strerror})") from None
    if blob.startswith(GZIP_MAGIC):
        blob = _gunzip(path, blob)
    elif len(blob) > MAX_REPORT_BYTES:
        raise ReportError(f"{path}: larger than {MAX_REPORT_BYTES >> 20} MiB; not a report")
    try:
        text = blob.decode()
    except UnicodeDecodeError as exc:
        raise ReportError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():  # a run that died before writing, or a file truncated to nothing
        raise ReportError(f"{path}: an empty file; not a report")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON ({json_problem(exc)})") from None
    except RecursionError:
        raise ReportError(f"{path}: JSON nested too deeply to be a report") from None
    return check(path, data)


def check(path: Path, data: Any) -> dict[str, Any]:
    """What :func:`load` checks of a parsed report, in its order (``report_stream`` checks a
    streamed report's top level the same way); ReportError names the file and the problem."""
    if not isinstance(data, dict) or data.get("tool") != TOOL:
        raise ReportError(f"{path}: not a {TOOL} report (no 'tool': '{TOOL}' field)")
    if data.get("schema") not in READABLE_SCHEMAS:
        raise ReportError(
            f"{path}: report schema {data.get('schema')!r}, this version reads schemas "
            f"{', '.join(map(str, READABLE_SCHEMAS))}; compare reports written by the same "
            "plugin version"
        )
    tests = data.get("tests")
    if not isinstance(tests, list):
        raise ReportError(f"{path}: field 'tests' must be a list of records with a 'nodeid'")
    for index, test in enumerate(tests):
        _check_record(path, index, test)
    for field in ("environment", "settings"):
        if not isinstance(data.get(field, {}), dict):
            raise ReportError(f"{path}: field {field!r} must be an object")
    _check_settings(path, data.get("settings", {}))
    _check_run(path, data.get("run"))
    return data


#: The ``settings`` fields that diff and merge read, and the types they may hold (each may be
#: absent: a report written before it was).
SETTINGS_FIELDS: dict[str, type] = {"isolate": str, "backend": str, "fast_contexts": bool}
#: The ``settings`` fields that are lists of names.
SETTINGS_LISTS: dict[str, str] = {"orders": "order names", "backends": "backend names"}


def _check_settings(path: Path, settings: dict[str, Any]) -> None:
    for field, names in SETTINGS_LISTS.items():
        value = settings.get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ReportError(
                f"{path}: field 'settings.{field}' must be a list of {names} (strings), "
                f"got {json.dumps(value, default=str)[:80]}"
            )
    for field, kind in SETTINGS_FIELDS.items():
        if field in settings and not isinstance(settings[field], kind):
            raise ReportError(
                f"{path}: field 'settings.{field}' must be a {kind.__name__}, "
                f"got {json.dumps(settings[field], default=str)[:80]}"
            )


#: The ``run`` record's fields and the types they may hold.
RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "complete": (bool,),
    "exit_status": (int, type(None)),
    "ended_by": (str,),
    "detail": (str, type(None)),
    "not_run": (int,),
}


def _check_run(path: Path, run: Any) -> None:
    if run is None:
        return  # schema 1: derived by run_of
    if not isinstance(run, dict):
        raise ReportError(f"{path}: field 'run' must be an object")
    for field, types in RUN_FIELDS.items():
        value = run.get(field, ...)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            allowed = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ReportError(f"{path}: field 'run.{field}' must be {allowed}")


def not_run(data: dict[str, Any]) -> list[str]:
    """The tests of a report that never ran to an outcome (the run ended before them)."""
    return [t["nodeid"] for t in data["tests"] if t.get("outcome") is None]


def run_of(data: dict[str, Any]) -> dict[str, Any]:
    """The report's ``run`` record. A report without one (schema 1, or a hand-made one) is read
    as complete exactly when every test has an outcome, ended by :data:`UNKNOWN`."""
    run = data.get("run")
    if isinstance(run, dict):
        return run
    missing = len(not_run(data))
    return {
        "complete": not missing,
        "exit_status": None,
        "ended_by": UNKNOWN,
        "detail": "a report without a 'run' record: read as complete where every test ran",
        "not_run": missing,
    }


def how_it_ended(data: dict[str, Any]) -> str:
    """One phrase for an incomplete run: ``interrupted (pytest-trtctx: SIGTERM received), exit
    status 2, 6 tests never ran``."""
    run = run_of(data)
    words = str(run["ended_by"]) + (f" ({run['detail']})" if run.get("detail") else "")
    if run.get("exit_status") is not None:
        words += f", exit status {run['exit_status']}"
    return words + f", {len(not_run(data))} tests never ran"
