"""The pytest plugin: options, markers, fixtures and short hooks over the plugin's modules.

Importing this module imports no torch, TensorRT or CUDA module: pytest loads plugins before any
test, so an eager import here would itself choose the CUDA init order. Heavy imports happen
inside fixtures and in forked workers.

Settings are resolved once (:mod:`.config`), each test's markers once (:mod:`.plan`); features
are plugin objects registered at configure time: known failures (:mod:`.known`), the summary
(:mod:`.summary`), and when asked for, the JSON report (:mod:`.report`) and the baseline
(:mod:`.baseline`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from . import config as cfg
from . import plan
from .checks import Outputs, run_checked, sha256
from .errors import ConfigError, MatrixError
from .known import KnownFailures
from .names import (
    MSG_ONLY_ORDERS,
)
from .outcomes import (
    BACKEND_PROPERTY,
    BACKEND_WHY_PROPERTY,
    FRESH,
    MESSAGES_PROPERTY,
    OUTPUTS,
    OUTPUTS_PROPERTY,
    RUNTIME,
    SIGNATURE_PROPERTY,
    outputs_of,
    signature_of,
)
from .summary import Summary, header_lines

MATRIX = pytest.StashKey[list[Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    cfg.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in plan.MARKERS:
        config.addinivalue_line("markers", line)
    try:
        settings = cfg.resolve(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[cfg.SETTINGS] = settings
    config.pluginmanager.register(KnownFailures(), "trtctx-known")
    config.pluginmanager.register(Summary(), "trtctx-summary")
    if settings.baseline is not None:
        from .baseline import BaselineKeeper

        keeper = BaselineKeeper(config, settings.baseline.value, settings.baseline_keep.value)
        config.pluginmanager.register(keeper, "trtctx-baseline")
    if settings.report is not None:
        from .report import ReportWriter

        writer = ReportWriter(config, settings, settings.report.value)
        config.pluginmanager.register(writer, "trtctx-report")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return header_lines(cfg.settings_of(config))


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    s = cfg.settings_of(config)
    if s.rebuild.value:
        from .storage import clear_caches

        clear_caches(s.cache_dir.value)
    # The xdist controller runs no test: its workers apply the order, each in its own process.
    xdist_controller = bool(getattr(config.option, "numprocesses", None)) and not hasattr(
        config, "workerinput"
    )
    if s.active and s.isolate.value == "none" and not config.option.collectonly:
        from .worker import apply_order

        if not xdist_controller:
            apply_order(config, s.orders.value[0])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    s = cfg.settings_of(metafunc.config)
    if "trtctx_order" in metafunc.fixturenames:
        params = [pytest.param(order, id=order) for order in s.orders.value]
        metafunc.parametrize("trtctx_order", params, indirect=True)
    if "trtctx_spec" in metafunc.fixturenames:
        specs = _matrix(metafunc.config)
        metafunc.parametrize(
            "trtctx_spec", [pytest.param(sp, id=sp.name) for sp in specs], indirect=True
        )


def _matrix(config: pytest.Config) -> list[Any]:
    specs = config.stash.get(MATRIX, None)
    if specs is None:
        from .matrix import load_matrix

        s = cfg.settings_of(config)
        try:
            specs = config.stash[MATRIX] = list(load_matrix(s.matrix.value))
        except MatrixError as exc:
            # A collection error with the message alone: the file, the entry and the field.
            pytest.fail(f"engine matrix ({s.matrix.source}): {exc}", pytrace=False)
    return list(specs)


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Make every test's plan: its markers are read here, once; a bad one is a usage error."""
    s = cfg.settings_of(config)
    problems = []
    for item in items:
        try:
            planned = item.stash[plan.PLAN] = plan.make(item, s)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if planned.only_orders is not None and planned.order not in planned.only_orders:
            wanted, selected = ", ".join(planned.only_orders), ", ".join(s.orders.value)
            reason = MSG_ONLY_ORDERS.format(wanted=wanted, selected=selected)
            item.add_marker(pytest.mark.skip(reason=reason))
    if problems:
        raise pytest.UsageError("\n".join(dict.fromkeys(problems)))


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
    return outputs_of(request.node)


@pytest.fixture
def trtctx(request: pytest.FixtureRequest, trtctx_order: str) -> Generator[Any, None, None]:
    """Build and run engines under the order applied in this process (a ``Runtime``)."""
    from . import backends, probe
    from .errors import BackendUnavailable, OrderError
    from .runtime import Runtime
    from .worker import order_state

    config = request.config
    try:
        state = order_state(config, trtctx_order)
    except OrderError as exc:
        pytest.fail(str(exc), pytrace=False)
    if state.skip_reason:
        pytest.skip(state.skip_reason)
    if state.error:
        pytest.fail(state.error, pytrace=False)
    request.node.stash[FRESH] = state.uses == 0
    state.uses += 1
    engine_cc = next(
        (d.cc for d in probe.machine().devices if d.index == state.engine_device), None
    )
    try:
        backend, why = backends.select(plan.of(request.node).backend.value, engine_cc)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    request.node.user_properties.append((BACKEND_PROPERTY, backend))
    request.node.user_properties.append((BACKEND_WHY_PROPERTY, why))
    s = cfg.settings_of(config)
    runtime = Runtime(state, backend, s.cache_dir.value, outputs_of(request.node))
    request.node.stash[RUNTIME] = runtime
    yield runtime
    runtime.close()


@pytest.fixture
def trtctx_explore(request: pytest.FixtureRequest) -> Any:
    """``trtctx_explore(check)``: run ``check(spec)`` on specs generated by hypothesis
    (``--trtctx-explore=N``); a failure is shrunk and printed as a ready-to-paste matrix entry."""
    s = cfg.settings_of(request.config)
    if s.explore.value == 0:
        pytest.skip("spec exploration is off: pass --trtctx-explore=N (N generated specs)")
    from .explore import explore

    def run(check: Any) -> None:
        explore(check, max_examples=s.explore.value, database=s.explore_db.value)

    return run


@pytest.fixture
def trtctx_fix_context(trtctx: Any) -> Any:
    """The known fix: push the engine's context around every execution (cuCtxPushCurrent /
    cuCtxPopCurrent on the executing thread). Returns the same ``trtctx`` runtime."""
    trtctx.fix_context = True
    return trtctx


# --------------------------------------------------------------------------------------------
# Running.


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Tests with output-check markers: the plugin runs the body and checks what it handed over."""
    planned = plan.of(pyfuncitem)
    if not planned.checks_outputs:
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_checked(
        lambda: pyfuncitem.obj(**args),
        outputs_of(pyfuncitem),
        runs=planned.bitwise_runs,
        nonzero=planned.nonzero,
    )
    return True


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """What the test left for its report: its failure signature, what the backend said, and
    the hashes of its outputs (the baseline and known failures read these further out)."""
    report = yield
    if call.excinfo is not None and report.failed:
        report.user_properties.append((SIGNATURE_PROPERTY, signature_of(call.excinfo.value)))
    if call.when != "call":
        return report
    runtime = item.stash.get(RUNTIME, None)
    if runtime is not None and runtime.messages:
        report.user_properties.append((MESSAGES_PROPERTY, list(runtime.messages)))
    outputs = item.stash.get(OUTPUTS, None)
    if outputs is not None and outputs.current:
        hashes = {name: sha256(t) for name, t in outputs.current.items()}
        report.user_properties.append((OUTPUTS_PROPERTY, hashes))
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    s = cfg.settings_of(session.config)
    if s.isolate.value == "none" or session.config.option.collectonly:
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(
            f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
            "during collection"
        )
    from . import probe
    from .forking import run_isolated
    from .worker import preload

    probe.machine()  # probe once here, in a child process; forked workers inherit the answer
    preload()
    run_isolated(session, s)
    return True
