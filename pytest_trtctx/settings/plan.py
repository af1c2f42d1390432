"""One frozen plan per test, made once at collection.

Every marker of the plugin is read here and nowhere else (:func:`make`): its order, backend,
hang timeout, known-failure declarations, bitwise runs and output checks. Everything later (the
worker, the scheduler, the known-failure verdict, the report, the summary) reads the plan from
``item.stash``; a bad marker value is a usage error at collection that names the test, once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from ..errors import ConfigError
from ..messages import (
    BACKENDS,
    MARK_BACKEND,
    MARK_BITWISE_STABLE,
    MARK_KNOWN_FAILURE,
    MARK_NONZERO,
    MARK_ORDERS,
    MARK_SCENARIO_EXPECTED,
    MARK_TIMEOUT,
    MARK_TRACE,
)
from ..scenarios import SHIPPED, Registry
from . import backend_axis
from . import config as cfg

#: The most runs ``trtctx_bitwise_stable`` takes: more is a typo that would hold a worker for
#: hours, not a stricter test.
MAX_BITWISE_RUNS = 1000

#: The markers' ``pytest --markers`` lines: what each one means and takes.
MARKERS = (
    f"{MARK_ORDERS}(*orders): run this test only under these init orders or hazards ("
    + ", ".join(s.name for s in SHIPPED)
    + ", or one registered with the pytest_trtctx_scenarios hook"
    + "); under the others it is skipped with the reason.",
    f"{MARK_KNOWN_FAILURE}(order, signature, reason=''): under ORDER (a name or a list) the test "
    "is expected to fail with a failure signature matching the regex SIGNATURE; it is reported "
    "as xfailed while it does, and FAILS the day it passes or fails differently.",
    f"{MARK_SCENARIO_EXPECTED}: (no arguments) under each scenario the test is held to what the "
    "scenario declares of an engine run under it (Scenario.known_failure), shipped and "
    "registered scenarios alike: the conv matrix's canaries.",
    f"{MARK_NONZERO}: (no arguments) every output handed to trtctx_outputs (or made by "
    "trtctx.run) must be written (no sentinel left where the plugin owns the buffer), finite "
    "and not all zero.",
    f"{MARK_BITWISE_STABLE}(runs=2): run the test body RUNS times (2 to {MAX_BITWISE_RUNS}); "
    "every output must be bitwise identical across runs; a failure shows the first differing "
    "index and the hashes.",
    f"{MARK_TIMEOUT}(seconds): hang timeout for this test in an isolated process "
    "(overrides --trtctx-timeout and the ini key trtctx_timeout).",
    f"{MARK_BACKEND}(name): engine backend for this test (" + ", ".join(BACKENDS) + "); "
    "overrides --trtctx-backend and the ini key trtctx_backend.",
    f"{MARK_TRACE}: trace CUDA contexts with CUPTI while this test runs (as --trtctx-trace does "
    "for every test): the failure names the line that made the wrong context current.",
)


@dataclass(frozen=True)
class KnownFailure:
    """A ``trtctx_known_failure`` declaration: under ``orders`` the test is expected to fail
    with a signature matching the regex ``signature``."""

    orders: tuple[str, ...]
    signature: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """What the plugin does with one test."""

    #: The order applied in the process that runs the test: its ``trtctx_order`` parameter, else
    #: the run's one selected order; None when the plugin applies no order for it.
    order: str | None
    #: ``trtctx_orders``: the orders the test may run under (None: any).
    only_orders: tuple[str, ...] | None
    backend: cfg.Setting[str]
    #: The backend named for this test (its marker, or one of a list it was parametrised with);
    #: None where it has only the run's: a test that builds no engine is no backend's.
    named_backend: str | None
    timeout: cfg.Setting[float]
    known_failures: tuple[KnownFailure, ...]
    #: Runs of the test body (``trtctx_bitwise_stable``); 1 runs it once, as pytest does.
    bitwise_runs: int
    #: ``trtctx_nonzero``: check every output handed over after each run.
    nonzero: bool
    #: ``trtctx_trace`` or ``--trtctx-trace``: trace CUDA contexts in the test's process.
    trace: cfg.Setting[bool]

    @property
    def known_failure(self) -> KnownFailure | None:
        """The declaration that applies under this test's order, if any (the first one)."""
        for known in self.known_failures:
            if self.order in known.orders:
                return known
        return None

    @property
    def checks_outputs(self) -> bool:
        """Whether the plugin runs the test body itself (its markers check outputs)."""
        return self.nonzero or self.bitwise_runs > 1


PLAN = pytest.StashKey[Plan]()


def name_of(item: pytest.Item) -> str:
    """The test as messages name it: its node id without parameters (one message per test
    function, not one per order and spec)."""
    original = getattr(item, "originalname", None)
    if original and item.parent is not None:
        return f"{item.parent.nodeid}::{original}"
    return item.nodeid


def param_order(item: pytest.Item) -> str | None:
    """The order the test was parametrised with (it takes the ``trtctx_order`` fixture)."""
    callspec = getattr(item, "callspec", None)
    order = callspec.params.get("trtctx_order") if callspec is not None else None
    return order if isinstance(order, str) else None


def param_backend(item: pytest.Item) -> str | None:
    """The backend the test was parametrised with, where the run lists several
    (``backend_axis.py``)."""
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get(backend_axis.PARAM) if callspec is not None else None
    return backend if isinstance(backend, str) else None


def make(item: pytest.Item, settings: cfg.Settings) -> Plan:
    """Read every marker of ``item`` and settle its precedence; ConfigError names the test."""
    name = name_of(item)

    def where(mark: str) -> str:
        return f"marker {mark} on {name}"

    only = item.get_closest_marker(MARK_ORDERS)
    timeout = _one_arg(item, MARK_TIMEOUT, "takes one number (seconds)", where)
    backend = _one_arg(item, MARK_BACKEND, "takes one backend name", where)
    listed = param_backend(item)
    if listed is not None and backend is not None:  # a parameter's mark: the function had none
        raise ConfigError(
            f"{where(MARK_BACKEND)}: marks one of its parameters, but the run lists several "
            f"backends ({settings.backends.source}) and each of its runs would be {backend}: "
            "mark the test function (it then runs that backend alone), or list one backend"
        )
    planned_backend = cfg.with_marker(
        settings.backend
        if listed is None
        else cfg.Setting(listed, f"{settings.backends.source}: one of the backends listed"),
        None if backend is None else cfg.parse_choice(backend, where(MARK_BACKEND), BACKENDS),
        where(MARK_BACKEND),
    )
    return Plan(
        order=param_order(item) or settings.single_order,
        only_orders=None
        if only is None
        else cfg.parse_orders(list(only.args), where(MARK_ORDERS), settings.registry),
        backend=planned_backend,
        named_backend=planned_backend.value if backend is not None else listed,
        timeout=cfg.with_marker(
            settings.timeout,
            None if timeout is None else cfg.parse_timeout(timeout, where(MARK_TIMEOUT)),
            where(MARK_TIMEOUT),
        ),
        known_failures=tuple(
            _known(m, where(MARK_KNOWN_FAILURE), settings.registry) for m in _knowns(item)
        )
        + _declared_by_scenarios(item, settings.registry, planned_backend.value),
        bitwise_runs=_bitwise_runs(item, where(MARK_BITWISE_STABLE)),
        nonzero=_nonzero(item, where(MARK_NONZERO)),
        trace=cfg.with_marker(
            settings.trace,
            True if item.get_closest_marker(MARK_TRACE) is not None else None,
            where(MARK_TRACE),
        ),
    )


def record(item: pytest.Item) -> dict[str, Any]:
    """What the plan says of ``item``, as plain data for its reports."""
    planned = of(item)
    callspec = getattr(item, "callspec", None)
    spec = callspec.params.get("trtctx_spec") if callspec is not None else None
    return {
        "order": planned.order,
        "backend": planned.backend.value,
        "named_backend": planned.named_backend,
        "spec": spec.to_dict() if spec is not None and hasattr(spec, "to_dict") else None,
    }


def of(item: pytest.Item) -> Plan:
    """The item's plan (made now for an item that was never collected as usual)."""
    plan = item.stash.get(PLAN, None)
    if plan is None:
        plan = item.stash[PLAN] = make(item, cfg.settings_of(item.config))
    return plan


def _one_arg(item: pytest.Item, mark: str, rule: str, where: Any) -> Any:
    marker = item.get_closest_marker(mark)
    if marker is None:
        return None
    if len(marker.args) != 1 or marker.kwargs:
        raise ConfigError(f"{where(mark)}: {rule}")
    return marker.args[0]


def _knowns(item: pytest.Item) -> list[pytest.Mark]:
    return list(item.iter_markers(MARK_KNOWN_FAILURE))


def _declared_by_scenarios(
    item: pytest.Item, registry: Registry, backend: str
) -> tuple[KnownFailure, ...]:
    """``trtctx_scenario_expected``: each scenario's own declaration for the test's backend
    (after the test's markers, which win: the first declaration that applies is the one held)."""
    if item.get_closest_marker(MARK_SCENARIO_EXPECTED) is None:
        return ()
    return tuple(
        KnownFailure((s.name,), s.known_failure.signature, s.known_failure.reason)
        for s in registry
        if s.known_failure is not None and backend not in s.known_failure.except_backends
    )


def _known(marker: pytest.Mark, where: str, registry: Registry) -> KnownFailure:
    args = list(marker.args)
    order = marker.kwargs.get("order", args.pop(0) if args else None)
    signature = marker.kwargs.get("signature", args.pop(0) if args else None)
    reason = str(marker.kwargs.get("reason", args.pop(0) if args else ""))
    if order is None or signature is None:
        raise ConfigError(f"{where}: needs an order and a signature regex")
    named = order if isinstance(order, list | tuple) else [order]
    orders = cfg.parse_orders(named, where, registry)
    try:
        re.compile(str(signature))
    except re.error as exc:
        raise ConfigError(f"{where}: signature {signature!r} is not a regex: {exc}") from None
    return KnownFailure(orders, str(signature), reason)


def _bitwise_runs(item: pytest.Item, where: str) -> int:
    marker = item.get_closest_marker(MARK_BITWISE_STABLE)
    if marker is None:
        return 1
    unknown = sorted(set(marker.kwargs) - {"runs"})
    if unknown or len(marker.args) > 1 or (marker.args and "runs" in marker.kwargs):
        raise ConfigError(
            f"{where}: takes runs (one number, or runs=N) and nothing else, got "
            f"{_arguments(marker)}"
        )
    runs = marker.kwargs.get("runs", marker.args[0] if marker.args else 2)
    if isinstance(runs, bool) or not isinstance(runs, int) or not 2 <= runs <= MAX_BITWISE_RUNS:
        raise ConfigError(
            f"{where}: runs must be an integer from 2 to {MAX_BITWISE_RUNS}, got {runs!r}"
        )
    return runs


def _nonzero(item: pytest.Item, where: str) -> bool:
    marker = item.get_closest_marker(MARK_NONZERO)
    if marker is None:
        return False
    if marker.args or marker.kwargs:  # ignoring them would check something else than asked
        raise ConfigError(f"{where}: takes no arguments, got {_arguments(marker)}")
    return True


def _arguments(marker: pytest.Mark) -> str:
    shown = [repr(a) for a in marker.args] + [f"{k}={v!r}" for k, v in marker.kwargs.items()]
    return "(" + ", ".join(shown) + ")"
