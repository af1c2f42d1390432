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

from collections.abc import Callable, Generator
from typing import Any

import pytest

from .around_test import TestRun
from .checks.outcomes import (
    BACKEND_PROPERTY,
    BACKEND_WHY_PROPERTY,
    PLAN_PROPERTY,
    RUNTIME,
    outputs_of,
)
from .checks.outputs import Outputs, run_checked
from .cuda.init_watch import CudaWatch
from .errors import ConfigError, MatrixError
from .messages import (
    MARK_ORDERS,
    MSG_CULPRIT_STARTUP,
    MSG_CULPRIT_UNKNOWN,
    MSG_NO_ORDER_SELECTED,
    MSG_NO_ORDER_SELECTED_MARKED,
    MSG_ONLY_ORDERS,
)
from .records.known_failures import KnownFailures
from .records.summary import Summary, header_lines
from .scenarios import ORDER
from .settings import backend_axis, plan, plan_slots
from .settings import config as cfg
from .settings.options import add_options

MATRIX = pytest.StashKey[list[Any]]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in plan.MARKERS:
        config.addinivalue_line("markers", line)
    try:
        settings = cfg.resolve(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[cfg.SETTINGS] = settings
    run = TestRun(watch=settings.active, prebuild=settings.prebuild.value)
    config.pluginmanager.register(run, "trtctx-run")
    config.pluginmanager.register(KnownFailures(), "trtctx-known")
    config.pluginmanager.register(Summary(), "trtctx-summary")
    config.pluginmanager.register(plan_slots, "trtctx-plan-slots")  # cuDNN's plans as tests
    config.pluginmanager.register(backend_axis, "trtctx-backend-axis")  # several backends
    watch = None
    if settings.active and settings.isolate.value != "none":
        watch = CudaWatch(config)
        config.pluginmanager.register(watch, "trtctx-cuda-watch")
    if settings.isolate.value != "none":
        from .isolation.collection import ChildCollection, forks_tests

        if forks_tests(config):  # test modules are imported in the workers, after the recipe
            config.pluginmanager.register(ChildCollection(watch), "trtctx-collection")
    if settings.baseline is not None:
        from .records.baseline import BaselineKeeper

        keeper = BaselineKeeper(config, settings.baseline.value, settings.baseline_keep.value)
        config.pluginmanager.register(keeper, "trtctx-baseline")
    if settings.report is not None:
        from .records.report import ReportWriter

        writer = ReportWriter(config, settings, settings.report.value)
        config.pluginmanager.register(writer, "trtctx-report")
    if settings.html is not None:
        from .records.html_writer import HtmlWriter

        page = HtmlWriter(config, settings, settings.html.value)
        config.pluginmanager.register(page, "trtctx-html")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return header_lines(cfg.settings_of(config))


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    s = cfg.settings_of(config)
    if s.rebuild.value:
        from .storage import clear_caches

        _removed, problems = clear_caches(s.cache_dir.value)
        for problem in problems:  # a read-only or busy cache: the run goes on without a rebuild
            warning = pytest.PytestConfigWarning(f"trtctx: --trtctx-rebuild: {problem}")
            config.issue_config_time_warning(warning, stacklevel=2)
    if s.active and cfg.xdist_controller(config):
        from .isolation.forking import EndedBySignals

        config.pluginmanager.register(EndedBySignals(), "trtctx-signals")
    if not s.active or config.option.collectonly or cfg.xdist_controller(config):
        return  # the xdist controller runs no test: its workers do, each in its own process
    if s.isolate.value == "none":
        from .isolation.worker import apply_order

        # Before collection: a test marked trtctx_trace starts the tracer at its setup instead.
        apply_order(config, s.orders.value[0], culprit=MSG_CULPRIT_STARTUP, trace=s.trace.value)
    elif hasattr(config, "workerinput"):
        from .isolation.forking import ForkEachTest

        config.pluginmanager.register(ForkEachTest(session, _culprit(config)), "trtctx-fork")


def _culprit(config: pytest.Config) -> Callable[[], str]:
    watch = config.pluginmanager.get_plugin("trtctx-cuda-watch")
    return watch.describe if isinstance(watch, CudaWatch) else lambda: MSG_CULPRIT_UNKNOWN


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    s = cfg.settings_of(metafunc.config)
    if "trtctx_order" in metafunc.fixturenames:
        if backend_axis.multiplied(metafunc):  # the backend (and cuDNN's slot) rides on the order
            names = ("trtctx_order", backend_axis.PARAM, plan_slots.PARAM)
            slots = s.cudnn_plans.value if "trtctx_spec" in metafunc.fixturenames else 0
            combos = backend_axis.order_params(s.orders.value, s.backends.value, slots)
            metafunc.parametrize(names, combos, indirect=True)
        elif s.active:
            params = [pytest.param(order, id=order) for order in s.orders.value]
            metafunc.parametrize("trtctx_order", params, indirect=True)
        else:  # no test id may name an order that is not applied
            why = _no_order_selected(metafunc, s)
            params = [pytest.param(None, id="no-order", marks=pytest.mark.skip(reason=why))]
            metafunc.parametrize("trtctx_order", params, indirect=True)
    if "trtctx_spec" in metafunc.fixturenames:
        specs = _matrix(metafunc.config)
        metafunc.parametrize(
            "trtctx_spec", [pytest.param(sp, id=sp.name) for sp in specs], indirect=True
        )


def _no_order_selected(metafunc: pytest.Metafunc, s: cfg.Settings) -> str:
    """Why a test that asks for an order skips in a run with none: how to select one (the
    orders its ``trtctx_orders`` marker names, where it has one)."""
    only = metafunc.definition.get_closest_marker(MARK_ORDERS)
    if only is not None and only.args:
        return MSG_NO_ORDER_SELECTED_MARKED.format(
            marked=",".join(cfg.split_names(list(only.args)))
        )
    return MSG_NO_ORDER_SELECTED.format(orders=", ".join(s.registry.of_kind(ORDER)))


def _matrix(config: pytest.Config) -> list[Any]:
    specs = config.stash.get(MATRIX, None)
    if specs is None:
        from .engines.matrix import load_matrix

        s = cfg.settings_of(config)
        problem = ""
        try:
            specs = config.stash[MATRIX] = list(load_matrix(s.matrix.value))
        except MatrixError as exc:
            problem = str(exc)
        if specs is None:  # outside the except block: the message once, no chained traceback
            # A collection error with the message alone: the file, the entry and the field.
            pytest.fail(f"engine matrix ({s.matrix.source}): {problem}", pytrace=False)
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
        item.user_properties.append((PLAN_PROPERTY, plan.record(item)))
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
def trtctx(
    request: pytest.FixtureRequest,
    trtctx_order: str,
    trtctx_plan: int | None,
    trtctx_backend: str | None,
) -> Generator[Any, None, None]:
    """Build and run engines under the order applied in this process (a ``Runtime``)."""
    from .errors import BackendUnavailable, OrderError
    from .isolation.worker import state_for
    from .scenarios.process import process_of
    from .scenarios.runtime import Runtime, choose_backend

    config = request.config
    try:  # the order gate (testrun.py) let the test through: its order was applied here
        state = state_for(process_of(config), trtctx_order)
    except OrderError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        backend, why = choose_backend(plan.of(request.node).backend.value, state)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    request.node.user_properties.append((BACKEND_PROPERTY, backend))
    request.node.user_properties.append((BACKEND_WHY_PROPERTY, why))
    s = cfg.settings_of(config)
    process = process_of(config)
    runtime = Runtime(state, backend, s.cache_dir.value, outputs_of(request.node), process)
    runtime.plan, runtime.plan_slots = trtctx_plan, s.cudnn_plans.value
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
    from .engines.explore import explore

    def run(check: Any) -> None:
        explore(check, max_examples=s.explore.value, database=s.explore_db.value)

    return run


@pytest.fixture
def trtctx_fix_context(trtctx: Any) -> Any:
    """The known fix: push the engine's context around every execution (cuCtxPushCurrent /
    cuCtxPopCurrent on the executing thread). Under a context hazard, that hazard's own fix (its
    scenario's ``fix``): the engine's own stream (foreign-stream), no capture (graph-capture), the
    engine's context kept alive (context-destroyed), no wrapper's context pushed over torch's
    kernels (pushed-over-torch), ... Returns the same ``trtctx`` runtime."""
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


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    s = cfg.settings_of(session.config)
    if s.isolate.value == "none" or session.config.option.collectonly:
        return None
    if cfg.xdist_controller(session.config) or hasattr(session.config, "workerinput"):
        return None  # xdist runs the loop; in its workers each test is forked (ForkEachTest)
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(
            f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
            "during collection"
        )
    from .cuda import probe
    from .isolation.forking import run_isolated
    from .isolation.worker import preload

    probe.machine()  # probe once here, in a child process; forked workers inherit the answer
    preload()
    run_isolated(session, s, _culprit(session.config))
    return True
