"""The pytest plugin: options, markers, fixtures, the isolated run loop, header and summary.

Importing this module imports no torch, TensorRT or CUDA module: pytest loads plugins before any
test, so an eager import here would itself choose the CUDA init order. Heavy imports happen
inside fixtures and in forked workers.

Precedence of every setting: a marker on the test, then the command-line option, then the ini
key, then the default (``pytest_trtctx.config``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from . import config as cfg
from .checks import CheckFailure, Outputs, bitwise_failures, nonzero_failures
from .errors import ConfigError, MatrixError
from .names import (
    BACKENDS,
    MARK_BACKEND,
    MARK_BITWISE_STABLE,
    MARK_KNOWN_FAILURE,
    MARK_NONZERO,
    MARK_ORDERS,
    MARK_TIMEOUT,
    MSG_KNOWN_FAILURE_GONE,
    MSG_KNOWN_FAILURE_OTHER,
    MSG_KNOWN_FAILURE_STALE,
    MSG_ONLY_ORDERS,
    ORDERS,
)

SETTINGS = pytest.StashKey["cfg.Settings"]()
OUTPUTS = pytest.StashKey[Outputs]()
#: The test's Runtime, so its report can carry what the backend said.
RUNTIME = pytest.StashKey[Any]()
#: Whether the test met its order fresh (the first test to use it in its process).
FRESH = pytest.StashKey[bool]()
SIGNATURE_PROPERTY = "trtctx_signature"
BACKEND_PROPERTY = "trtctx_backend"
OUTPUTS_PROPERTY = "trtctx_output_sha256"
KNOWN_PROPERTY = "trtctx_known_failure"
DRIFT_PROPERTY = "trtctx_baseline_drift"
MESSAGES_PROPERTY = "trtctx_messages"
KNOWN_PREFIX = "known failure under "

MARKERS = (
    f"{MARK_ORDERS}(*orders): run this test only under these init orders ("
    + ", ".join(ORDERS)
    + "); under the others it is skipped with the reason.",
    f"{MARK_KNOWN_FAILURE}(order, signature, reason=''): under ORDER (a name or a list) the test "
    "is expected to fail with a failure signature matching the regex SIGNATURE; it is reported "
    "as xfailed while it does, and FAILS the day it passes or fails differently.",
    f"{MARK_NONZERO}: every output handed to trtctx_outputs (or made by trtctx.run) must be "
    "written (no sentinel left where the plugin owns the buffer), finite and not all zero.",
    f"{MARK_BITWISE_STABLE}(runs=2): run the test body RUNS times; every output must be bitwise "
    "identical across runs; a failure shows the first differing index and the hashes.",
    f"{MARK_TIMEOUT}(seconds): hang timeout for this test in an isolated process "
    "(overrides --trtctx-timeout and the ini key trtctx_timeout).",
    f"{MARK_BACKEND}(name): engine backend for this test (" + ", ".join(BACKENDS) + "); "
    "overrides --trtctx-backend and the ini key trtctx_backend.",
)


# --------------------------------------------------------------------------------------------
# Options and configuration.


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trtctx", "CUDA context init orders (pytest-trtctx)")
    for dest, ini, flag, help_text in cfg.OPTIONS:
        if dest == "trtctx_order":
            group.addoption(flag, dest=dest, action="append", default=[], help=help_text)
        elif dest in ("trtctx_rebuild", "trtctx_baseline_keep"):
            group.addoption(flag, dest=dest, action="store_true", default=False, help=help_text)
            parser.addini(ini, help_text, type="bool", default=False)
            continue
        else:
            group.addoption(flag, dest=dest, default=None, help=help_text)
        parser.addini(ini, help_text, default=None)


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    try:
        settings = cfg.resolve(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    if settings.isolate.value != "none" and (
        getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput")
    ):
        raise pytest.UsageError(
            f"{settings.isolate.source}: --trtctx-isolate={settings.isolate.value} runs its own "
            "fresh processes in parallel (--trtctx-workers) and cannot run inside xdist's -n "
            "workers; drop -n, or use --trtctx-isolate=none with -n (each xdist worker then "
            "applies the order once)."
        )
    config.stash[SETTINGS] = settings
    baseline = cfg.path_setting(config, "trtctx_baseline")
    if baseline is not None:
        keeper = BaselineKeeper(config, baseline.value, cfg.flag(config, "trtctx_baseline_keep"))
        config.pluginmanager.register(keeper, "trtctx-baseline")
    report = cfg.path_setting(config, "trtctx_report")
    if report is not None:
        from .report import ReportWriter

        config.pluginmanager.register(ReportWriter(config, report.value), "trtctx-report")


def settings_of(config: pytest.Config) -> cfg.Settings:
    return config.stash[SETTINGS]


def apply_order(config: pytest.Config, order: str) -> Any:
    """Apply ``order``'s recipe in this process (a fresh worker, or the session at start)."""
    from . import orders, probe

    settings = settings_of(config)
    info = probe.machine()
    return orders.apply(
        order,
        settings.device.value,
        len(info.devices),
        "" if info.has_gpu else info.why_no_gpu,
        names=", ".join(d.name for d in info.devices) or "none",
    )


#: Imported in the pytest process before the first fork, so that each worker starts with them
#: loaded (about 9 ms a fork) instead of importing torch itself (about 5 s). Importing them does
#: not initialise CUDA; probe.cuda_untouched() checks that before every fork.
PRELOAD = ("torch", "cuda.bindings.driver", "cuda.bindings.nvrtc")


def preload() -> list[str]:
    import importlib

    loaded = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # not installed here: the worker that needs it will say so
            continue
        loaded.append(name)
    return loaded


REBUILT = pytest.StashKey[int]()
#: The cache subfolders this plugin owns (kernels.compile_conv, engine_cache).
CACHE_SUBDIRS = ("cubin", "engines")


def clear_caches(cache_dir: Path) -> int:
    """Delete the plugin's cache entries under ``cache_dir`` (nothing else); count them."""
    import shutil

    removed = 0
    for sub in CACHE_SUBDIRS:
        folder = cache_dir / sub
        if folder.is_dir():
            removed += sum(1 for p in folder.iterdir() if p.is_file())
            shutil.rmtree(folder)
    return removed


def pytest_report_header(config: pytest.Config) -> list[str]:
    from . import backends, probe

    s = settings_of(config)
    why = backends.describe(s.backend.value)
    lines = [
        f"trtctx: orders {', '.join(s.orders.value)} ({s.orders.source}); "
        f"isolate {s.isolate.value} ({s.isolate.source}"
        + (f", {s.workers.value} workers ({s.workers.source})" if s.isolate.value != "none" else "")
        + f"); device {s.device.value}; "
        f"backend {s.backend.value} ({s.backend.source}): {why}",
    ]
    if s.active:
        lines.append("trtctx: " + probe.machine().describe())
    else:
        lines.append("trtctx: no order selected; the plugin only serves tests that ask for it")
    lines.append("trtctx: " + ", ".join(f"{k} {v}" for k, v in probe.versions().items()))
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    s = settings_of(session.config)
    config = session.config
    if cfg.flag(config, "trtctx_rebuild"):
        removed = clear_caches(s.cache_dir.value)
        config.stash[REBUILT] = removed
    xdist_controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(
        config, "workerinput"
    )  # runs no test: its workers apply the order, each in its own process
    if s.active and s.isolate.value == "none" and not config.option.collectonly:
        if xdist_controller:
            return
        apply_order(config, s.orders.value[0])


# --------------------------------------------------------------------------------------------
# Parametrisation: orders and the engine matrix.


def _marker_orders(metafunc: pytest.Metafunc) -> tuple[str, ...] | None:
    marker = metafunc.definition.get_closest_marker(MARK_ORDERS)
    if marker is None:
        return None
    names = cfg.parse_orders(
        list(marker.args), f"marker {MARK_ORDERS} on {metafunc.definition.nodeid}"
    )
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    s = settings_of(metafunc.config)
    if "trtctx_order" in metafunc.fixturenames:
        try:
            wanted = _marker_orders(metafunc)
        except ConfigError as exc:
            pytest.fail(str(exc), pytrace=False)
        params = []
        for order in s.orders.value:
            marks = []
            if wanted is not None and order not in wanted:
                marks.append(
                    pytest.mark.skip(
                        reason=MSG_ONLY_ORDERS.format(
                            wanted=", ".join(wanted), selected=", ".join(s.orders.value)
                        )
                    )
                )
            params.append(pytest.param(order, id=order, marks=marks))
        metafunc.parametrize("trtctx_order", params, indirect=True)
    if "trtctx_spec" in metafunc.fixturenames:
        specs = _matrix(metafunc.config)
        metafunc.parametrize(
            "trtctx_spec", [pytest.param(sp, id=sp.name) for sp in specs], indirect=True
        )


def _matrix(config: pytest.Config) -> list[Any]:
    from .matrix import load_matrix

    key = "_trtctx_matrix"
    cached = getattr(config, key, None)
    if cached is None:
        s = settings_of(config)
        try:
            cached = load_matrix(s.matrix.value)
        except MatrixError as exc:
            # A collection error with the message alone: the file, the entry and the field.
            pytest.fail(f"engine matrix ({s.matrix.source}): {exc}", pytrace=False)
        setattr(config, key, cached)
    return list(cached)


def known_failures(item: pytest.Item) -> list[tuple[tuple[str, ...], str, str]]:
    """The item's ``trtctx_known_failure`` declarations: (orders, signature regex, reason)."""
    out = []
    for marker in item.iter_markers(MARK_KNOWN_FAILURE):
        where = f"marker {MARK_KNOWN_FAILURE} on {item.nodeid}"
        args = list(marker.args)
        order = marker.kwargs.get("order", args.pop(0) if args else None)
        signature = marker.kwargs.get("signature", args.pop(0) if args else None)
        reason = str(marker.kwargs.get("reason", args.pop(0) if args else ""))
        if order is None or signature is None:
            raise ConfigError(f"{where}: needs an order and a signature regex")
        orders = cfg.parse_orders(order if isinstance(order, list | tuple) else [order], where)
        try:
            re.compile(str(signature))
        except re.error as exc:
            raise ConfigError(f"{where}: signature {signature!r} is not a regex: {exc}") from None
        out.append((orders, str(signature), reason))
    return out


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    problems = []
    for item in items:
        try:
            known_failures(item)
            _bitwise_runs(item)
            _timeout_marker(item)
            _backend_marker(item, settings_of(config))
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise pytest.UsageError("\n".join(dict.fromkeys(problems)))


def _bitwise_runs(item: pytest.Item) -> int:
    marker = item.get_closest_marker(MARK_BITWISE_STABLE)
    if marker is None:
        return 1
    runs = marker.kwargs.get("runs", marker.args[0] if marker.args else 2)
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 2:
        raise ConfigError(
            f"marker {MARK_BITWISE_STABLE} on {item.nodeid}: runs must be an integer >= 2, "
            f"got {runs!r}"
        )
    return runs


def _timeout_marker(item: pytest.Item) -> None:
    marker = item.get_closest_marker(MARK_TIMEOUT)
    if marker is not None:
        if len(marker.args) != 1:
            raise ConfigError(f"marker {MARK_TIMEOUT} on {item.nodeid}: takes one number (seconds)")
        cfg.parse_timeout(marker.args[0], f"marker {MARK_TIMEOUT} on {item.nodeid}")


def _backend_marker(item: pytest.Item, s: cfg.Settings) -> str:
    marker = item.get_closest_marker(MARK_BACKEND)
    if marker is None:
        return s.backend.value
    if len(marker.args) != 1:
        raise ConfigError(f"marker {MARK_BACKEND} on {item.nodeid}: takes one backend name")
    return cfg.parse_choice(marker.args[0], f"marker {MARK_BACKEND} on {item.nodeid}", BACKENDS)


# --------------------------------------------------------------------------------------------
# Fixtures.


@pytest.fixture
def trtctx_order(request: pytest.FixtureRequest) -> str:
    """The init order this test runs under (parametrised from --trtctx-order)."""
    return str(request.param)


@pytest.fixture
def trtctx_spec(request: pytest.FixtureRequest) -> Any:
    """One conv spec of the engine matrix (parametrised from --trtctx-matrix)."""
    return request.param


@pytest.fixture
def trtctx_outputs(request: pytest.FixtureRequest) -> Outputs:
    """Hand outputs to the plugin: ``trtctx_outputs.add(name, tensor)``; ``.empty(...)``
    allocates a sentinel-filled output so a never-written buffer is caught."""
    return _outputs(request.node)


def _outputs(item: pytest.Item) -> Outputs:
    if OUTPUTS not in item.stash:
        item.stash[OUTPUTS] = Outputs()
    return item.stash[OUTPUTS]


@pytest.fixture
def trtctx(request: pytest.FixtureRequest, trtctx_order: str) -> Generator[Any, None, None]:
    """Build and run engines under the order applied in this process (a ``Runtime``)."""
    from . import orders
    from .probe import cuda_untouched
    from .runtime import Runtime

    config = request.config
    s = settings_of(config)
    state = orders.CURRENT
    if state is None:
        ok, why = cuda_untouched(nvml_ok=True)
        if not ok:
            pytest.fail(
                f"order {trtctx_order} cannot be applied: {why}. With --trtctx-isolate=none "
                "an order is applied once, before CUDA is used; select it with --trtctx-order, "
                "or isolate (--trtctx-isolate=order or test).",
                pytrace=False,
            )
        state = apply_order(config, trtctx_order)
    elif state.order != trtctx_order:
        pytest.fail(
            f"this process runs order {state.order}, the test asks for {trtctx_order}",
            pytrace=False,
        )
    if state.skip_reason:
        pytest.skip(state.skip_reason)
    if state.error:
        pytest.fail(state.error, pytrace=False)
    from . import backends, probe
    from .errors import BackendUnavailable

    request.node.stash[FRESH] = state.uses == 0
    state.uses += 1
    devices = probe.machine().devices
    engine_cc = next((d.cc for d in devices if d.index == state.engine_device), None)
    try:
        backend, why = backends.select(_backend_marker(request.node, s), engine_cc)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    request.node.user_properties.append((BACKEND_PROPERTY, backend))
    request.node.user_properties.append(("trtctx_backend_why", why))
    runtime = Runtime(state, backend, s.cache_dir.value, _outputs(request.node))
    request.node.stash[RUNTIME] = runtime
    yield runtime
    runtime.close()


@pytest.fixture
def trtctx_explore(request: pytest.FixtureRequest) -> Any:
    """``trtctx_explore(check)``: run ``check(spec)`` on specs generated by hypothesis
    (``--trtctx-explore=N``); a failure is shrunk and printed as a ready-to-paste matrix entry."""
    config = request.config
    raw = cfg.raw_setting(config, "trtctx_explore")
    if raw is None or str(raw[0]).strip() == "0":
        pytest.skip("spec exploration is off: pass --trtctx-explore=N (N generated specs)")
    try:
        count = cfg.parse_int(raw[0], raw[1], minimum=1, what="a number of specs >= 1")
    except ConfigError as exc:
        pytest.fail(str(exc), pytrace=False)
    db = cfg.path_setting(config, "trtctx_explore_db")
    database = db.value if db else Path(config.rootpath) / ".hypothesis" / "trtctx"
    from .explore import explore

    def run(check: Any) -> None:
        explore(check, max_examples=count, database=database)

    return run


@pytest.fixture
def trtctx_fix_context(trtctx: Any) -> Any:
    """The known fix: push the engine's context around every execution (cuCtxPushCurrent /
    cuCtxPopCurrent on the executing thread). Returns the same ``trtctx`` runtime."""
    trtctx.fix_context = True
    return trtctx


# --------------------------------------------------------------------------------------------
# Running: markers on the call, known failures on the report, the isolated loop.


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    nonzero = pyfuncitem.get_closest_marker(MARK_NONZERO)
    runs = _bitwise_runs(pyfuncitem)
    if nonzero is None and runs == 1:
        return None
    outputs = _outputs(pyfuncitem)
    names = pyfuncitem._fixtureinfo.argnames
    args = {name: pyfuncitem.funcargs[name] for name in names}
    results = []
    for run in range(runs):
        if run:
            outputs.next_run()
        pyfuncitem.obj(**args)
        if nonzero is not None:
            results += [
                r
                if runs == 1
                else type(r)(r.check, r.ok, f"run {run + 1}: {r.detail}", r.signature)
                for r in nonzero_failures(outputs)
            ]
    if runs > 1:
        results += bitwise_failures(outputs)
    if not all(r.ok for r in results):
        which = " and ".join(
            m for m, on in ((MARK_NONZERO, nonzero), (MARK_BITWISE_STABLE, runs > 1)) if on
        )
        failure = CheckFailure(results)
        raise CheckFailure(results, title=f"{which}: {failure.signature}")
    return True


def _signature(exc: BaseException) -> str:
    if isinstance(exc, CheckFailure):
        return exc.signature
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    from .isolation import item_order

    signature = None
    if call.excinfo is not None and report.failed:
        signature = _signature(call.excinfo.value)
        report.user_properties.append((SIGNATURE_PROPERTY, signature))
    if call.when != "call":
        return report
    runtime = item.stash.get(RUNTIME, None)
    if runtime is not None and runtime.messages:
        report.user_properties.append((MESSAGES_PROPERTY, list(runtime.messages)))
    outputs = item.stash.get(OUTPUTS, None)
    if outputs is not None and outputs.current:
        from .checks import sha256

        hashes = {name: sha256(t) for name, t in outputs.current.items()}
        report.user_properties.append((OUTPUTS_PROPERTY, hashes))
        keeper = item.config.pluginmanager.get_plugin("trtctx-baseline")
        if isinstance(keeper, BaselineKeeper) and report.passed:
            keeper.check(item, report, dict(outputs.current), hashes)
    s = settings_of(item.config)
    order = item_order(item) or (s.orders.value[0] if s.active else None)
    for orders, pattern, reason in known_failures(item):
        if order not in orders:
            continue
        if not item.stash.get(FRESH, True):
            status = "not enforced"
            report.sections.append(
                ("trtctx known failure", MSG_KNOWN_FAILURE_STALE.format(order=order))
            )
        elif report.passed:
            status = "stopped reproducing"
            report.outcome = "failed"
            report.longrepr = MSG_KNOWN_FAILURE_GONE.format(
                order=order, signature=pattern, reason=reason or "no reason given"
            )
            report.user_properties.append((SIGNATURE_PROPERTY, "known failure stopped reproducing"))
        elif report.failed and signature is not None and re.search(pattern, signature):
            status = "reproduced"
            report.outcome = "skipped"
            report.wasxfail = f"{KNOWN_PREFIX}{order}: {signature}"
        elif report.failed:
            status = "failed differently"
            report.sections.append(
                (
                    "trtctx known failure",
                    MSG_KNOWN_FAILURE_OTHER.format(order=order, signature=pattern, got=signature),
                )
            )
        else:
            status = "skipped"
        report.user_properties.append(
            (KNOWN_PROPERTY, {"order": order, "signature": pattern, "status": status})
        )
        break
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    s = settings_of(session.config)
    if s.isolate.value == "none" or session.config.option.collectonly:
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(
            f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
            "during collection"
        )
    from . import probe
    from .isolation import Scheduler

    probe.machine()  # probe once here, in a child process; forked workers inherit the answer
    preload()
    Scheduler(session, s).run()
    return True


# --------------------------------------------------------------------------------------------
# Summary.


ITEMS = pytest.StashKey[dict[str, pytest.Item]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    session.config.stash[ITEMS] = {item.nodeid: item for item in session.items}


class BaselineKeeper:
    """``--trtctx-baseline``: compare outputs with their baseline, record new ones at the end."""

    def __init__(self, config: pytest.Config, root: Path, keep: bool) -> None:
        self.config = config
        self.root = root
        self.keep = keep
        self.baseline: Any = None
        self.env: dict[str, Any] = {}
        self.results: dict[str, dict[str, str]] = {}
        self.upgrade_drifts: list[str] = []
        self.added = 0

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # In the pytest process, before any worker is forked: workers inherit the answer.
        from .baseline import Baseline, fingerprint
        from .report import environment

        self.env = environment()
        self.baseline = Baseline(self.root, fingerprint(self.env), self.keep)

    def check(
        self,
        item: pytest.Item,
        report: pytest.TestReport,
        outputs: dict[str, Any],
        hashes: dict[str, str],
    ) -> None:
        drifts = self.baseline.compare(item.nodeid, outputs, hashes)
        same = [d.describe() for d in drifts if d.same_environment]
        other = [d.describe() for d in drifts if not d.same_environment]
        if same:
            report.outcome = "failed"
            report.longrepr = "trtctx baseline: outputs drifted in the same environment\n" + (
                "\n".join(f"  {line}" for line in same)
            )
            report.user_properties.append((SIGNATURE_PROPERTY, "baseline: output drifted"))
        if other:
            report.sections.append(("trtctx baseline (another environment)", "\n".join(other)))
            report.user_properties.append((DRIFT_PROPERTY, other))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = {str(p[0]): p[1] for p in report.user_properties}
        hashes = props.get(OUTPUTS_PROPERTY)
        if report.when == "call" and report.passed and isinstance(hashes, dict):
            self.results[report.nodeid] = hashes
        drift = props.get(DRIFT_PROPERTY)
        if isinstance(drift, list):
            self.upgrade_drifts.extend(f"{report.nodeid}: {line}" for line in drift)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.baseline is not None and not hasattr(self.config, "workerinput"):
            self.added = self.baseline.record(self.env, self.results)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        if self.baseline is None:
            return
        tr.write_line(
            f"trtctx baseline: {self.root / self.baseline.current} (+{self.added} new entries)"
        )
        if self.upgrade_drifts:
            tr.write_line(
                f"trtctx baseline: {len(self.upgrade_drifts)} output(s) differ from another "
                "environment's baseline:"
            )
            for line in self.upgrade_drifts[:20]:
                tr.write_line(f"  {line}")


#: A test's outcome is the most severe of its phases' outcomes.
OUTCOME_RANK = {"passed": 0, "skipped": 1, "xfailed": 1, "known-failure": 2, "failed": 3}
OUTCOME_RANK["error"] = 3


def classify(report: pytest.TestReport) -> str | None:
    """One phase's outcome: passed, failed (in the call), error (in setup or teardown),
    skipped, xfailed, known-failure; None for a passing setup or teardown."""
    if hasattr(report, "wasxfail"):
        return "known-failure" if str(report.wasxfail).startswith(KNOWN_PREFIX) else "xfailed"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    if report.skipped:
        return "skipped"
    if report.passed and report.when == "call":
        return "passed"
    return None


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    from .isolation import item_order

    s = settings_of(config)
    items = config.stash.get(ITEMS, {})
    final: dict[str, tuple[str, str | None]] = {}
    ran_on: dict[str, str] = {}  # the backend each test really ran on, as its process reported
    for reports in terminalreporter.stats.values():
        for report in reports:
            if not isinstance(report, pytest.TestReport):
                continue
            kind = classify(report)
            if kind is None:
                continue
            kind = "failed" if kind == "error" else kind
            props = dict(report.user_properties)
            sig = props.get(SIGNATURE_PROPERTY)
            backend = props.get(BACKEND_PROPERTY)
            if isinstance(backend, str):
                ran_on[report.nodeid] = backend
            old = final.get(report.nodeid)
            if old is None or OUTCOME_RANK[kind] > OUTCOME_RANK[old[0]]:
                final[report.nodeid] = (kind, sig if isinstance(sig, str) else old and old[1])
    rows: dict[tuple[str, str], Counter[str]] = {}
    signatures: Counter[tuple[str, str]] = Counter()
    for nodeid, (kind, sig) in final.items():
        item = items.get(nodeid)
        if item is None:
            continue
        order = item_order(item)
        if order is None:
            continue
        backend = ran_on.get(nodeid) or _backend_marker(item, s)
        rows.setdefault((order, backend), Counter())[kind] += 1
        if sig and kind in ("failed", "known-failure"):
            signatures[(sig, kind)] += 1
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("=", "trtctx summary")
    cols = ("passed", "failed", "known-failure", "skipped")
    tr.write_line(f"{'order':<14} {'backend':<8} " + " ".join(f"{c:>13}" for c in cols))
    for order in ORDERS:
        for (o, backend), counts in sorted(rows.items()):
            if o == order:
                tr.write_line(
                    f"{order:<14} {backend:<8} " + " ".join(f"{counts.get(c, 0):>13}" for c in cols)
                )
    if signatures:
        tr.write_line("most frequent failure signatures:")
        for (sig, kind), count in signatures.most_common(5):
            tr.write_line(f"  {count:>5}  {sig}  [{kind}]")
