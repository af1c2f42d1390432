"""The scenarios: every init order and context hazard, one module each, and the ones users add.

A scenario is one :class:`~.base.Scenario` object in one module (``torch_first.py``,
``foreign_stream.py``, ...). :class:`Registry` lists the shipped ones and those a user registers
through the ``pytest_trtctx_scenarios`` hook (:mod:`pytest_trtctx.hookspecs`); selection
(``all``, ``hazards``, names), the run, the diagnosis, the summary and the suite's canaries read
it. Nothing outside a scenario's module branches on a scenario's name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator

from ..errors import ConfigError
from ..messages import ALL_HAZARDS, ALL_ORDERS, MSG_BAD_SCENARIO
from . import (
    context_destroyed,
    device_hop,
    driver_first,
    foreign_stream,
    fork_after_init,
    graph_capture,
    lazy_stall,
    multi_device,
    pushed_over_torch,
    thread_hop,
    torch_first,
    trt_first,
)
from .base import HAZARD, ORDER, SHIPPED_SOURCE, KnownFailure, Run, Scenario, State

#: The shipped scenarios, in the order the summary lists them: the init orders, then the hazards.
SHIPPED: tuple[Scenario, ...] = (
    torch_first.SCENARIO,
    trt_first.SCENARIO,
    driver_first.SCENARIO,
    thread_hop.SCENARIO,
    multi_device.SCENARIO,
    foreign_stream.SCENARIO,
    graph_capture.SCENARIO,
    context_destroyed.SCENARIO,
    fork_after_init.SCENARIO,
    lazy_stall.SCENARIO,
    pushed_over_torch.SCENARIO,
    device_hop.SCENARIO,
)
#: The shipped init orders' names (``pytest_trtctx.ORDERS``).
ORDERS: tuple[str, ...] = tuple(s.name for s in SHIPPED if s.kind == ORDER)
HAZARDS: tuple[str, ...] = tuple(s.name for s in SHIPPED if s.kind == HAZARD)
SCENARIOS: tuple[str, ...] = ORDERS + HAZARDS
#: The shipped scenarios that need two GPUs (their engine lives on the next device).
TWO_DEVICES: tuple[str, ...] = tuple(s.name for s in SHIPPED if s.devices > 1)

#: What a scenario's name may be: lowercase words joined by hyphens (it is a test id and a
#: command-line value).
NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class Registry:
    """The scenarios a run can select: the shipped ones, then those users registered."""

    def __init__(self, scenarios: Iterable[Scenario] = SHIPPED) -> None:
        self._by_name: dict[str, Scenario] = {}
        for scenario in scenarios:
            self._by_name[scenario.name] = scenario

    def add(self, scenario: object, where: str) -> Scenario:
        """Add a user's scenario; ConfigError naming ``where`` it came from when it is not one,
        or its name is malformed or taken."""
        if not isinstance(scenario, Scenario):
            raise ConfigError(
                MSG_BAD_SCENARIO.format(where=where, why=f"not a Scenario: {scenario!r}")
            )
        name = scenario.name
        if not isinstance(name, str) or not NAME.match(name) or name in (ALL_ORDERS, ALL_HAZARDS):
            why = f"name {name!r} is not lowercase words joined by hyphens, or is reserved"
            raise ConfigError(MSG_BAD_SCENARIO.format(where=where, why=why))
        if name in self._by_name:
            taken = self._by_name[name].source
            why = f"name {name!r} is taken (by {taken})"
            raise ConfigError(MSG_BAD_SCENARIO.format(where=where, why=why))
        if scenario.kind not in (ORDER, HAZARD):
            why = f"kind {scenario.kind!r} is neither {ORDER!r} nor {HAZARD!r}"
            raise ConfigError(MSG_BAD_SCENARIO.format(where=where, why=why))
        if scenario.source == SHIPPED_SOURCE:  # the summary and errors say where it came from
            scenario = dataclasses.replace(scenario, source=where)
        self._by_name[name] = scenario
        return scenario

    def __getitem__(self, name: str) -> Scenario:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Scenario]:
        return iter(self._by_name.values())

    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def of_kind(self, kind: str) -> tuple[str, ...]:
        return tuple(s.name for s in self if s.kind == kind)

    def expand(self, name: str) -> tuple[str, ...] | None:
        """What one value of ``--trtctx-order`` selects: ``all`` every init order, ``hazards``
        every context hazard, a name itself; None for an unknown name."""
        if name == ALL_ORDERS:
            return self.of_kind(ORDER)
        if name == ALL_HAZARDS:
            return self.of_kind(HAZARD)
        return (name,) if name in self._by_name else None

    def allowed(self) -> str:
        """The values ``--trtctx-order`` takes, for messages."""
        return ", ".join((*self.names(), ALL_ORDERS, ALL_HAZARDS))


__all__ = [
    "HAZARD",
    "HAZARDS",
    "ORDER",
    "ORDERS",
    "SCENARIOS",
    "SHIPPED",
    "TWO_DEVICES",
    "KnownFailure",
    "Registry",
    "Run",
    "Scenario",
    "State",
]
