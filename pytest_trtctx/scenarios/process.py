"""What one process holds of its scenario: the applied state and the engines built after it.

One :class:`Process` per pytest process or worker, kept on the config (``process_of``) and handed
to who needs it: the worker applies the scenario through it, the test's setup reads it, the
runtime looks prebuilt engines up in it by (backend, spec).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import NoCudaDriver, OrderError, TrtctxError
from ..messages import MSG_NO_DRIVER, MSG_TOO_FEW_DEVICES, SCENARIO_ENV
from .base import State

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, MutableMapping

    from ..backends.base import Engine
    from .base import Scenario


@dataclass
class Process:
    """This process's scenario (applied once: CUDA cannot be un-initialised) and the engines
    built right after its recipe (``--trtctx-prebuild``), by (backend, spec name)."""

    state: State | None = None
    prebuilt: dict[tuple[str, str], Engine] = field(default_factory=dict)

    def context_destroyed(self, context: Any, also: Iterable[Engine] = ()) -> None:
        """``context`` was just destroyed: mark every engine of it, prebuilt here or in
        ``also``, as such: none runs again (``Runtime.build`` builds the test its own). Compared
        by handle value, which is safe only right after the destroy: a context made later may
        reuse the value."""
        gone = int(context)
        for engine in (*self.prebuilt.values(), *also):
            if int(engine.context) == gone:
                engine.details["context_destroyed"] = True

    def apply(
        self,
        scenario: Scenario,
        device: int,
        device_count: int | None = None,
        why_no_gpu: str = "",
        names: str = "",
        blocked: str = "",
        for_speed: bool = False,
    ) -> State:
        """Run ``scenario``'s recipe in this process and keep its state.

        Never raises for a machine that cannot run it: the state carries the skip reason, and
        every test that needs it skips with it. ``blocked`` is such a reason known beforehand
        (this process initialised CUDA already): the recipe is not run at all.
        """
        if self.state is not None:
            if self.state.scenario is not scenario or self.state.device != device:
                raise OrderError(
                    f"order {scenario.name} cannot be applied: {self.state.order} was already "
                    "applied in this process, and CUDA cannot be un-initialised"
                )
            return self.state
        engine_device = device
        if scenario.engine_device_offset and device_count is not None:
            engine_device = (device + scenario.engine_device_offset) % max(device_count, 1)
        state = self.state = State(scenario, device, device, engine_device)
        os.environ[SCENARIO_ENV] = scenario.name
        if blocked:
            state.skip_reason = blocked
            return state
        if why_no_gpu:
            state.skip_reason = MSG_NO_DRIVER.format(why=why_no_gpu)
            return state
        if scenario.devices > 1 and (device_count or 0) < scenario.devices:
            state.skip_reason = MSG_TOO_FEW_DEVICES.format(
                order=scenario.name,
                needs=scenario.devices,
                count=device_count or 0,
                names=names or "none",
            )
            return state
        try:
            from ..cuda import driver

            os.environ.update(scenario.environment)  # read once, by cuInit
            if for_speed:  # --trtctx-fast-contexts: the user's tests here see it too
                state.steps.extend(set_for_speed(scenario.speed_environment, os.environ))
            driver.init()
            if device >= driver.device_count():
                state.skip_reason = (
                    f"device {device} does not exist: the driver reports {driver.device_count()}"
                )
                return state
            scenario.recipe(state)
        except NoCudaDriver as exc:
            state.skip_reason = MSG_NO_DRIVER.format(why=exc)
        except ImportError as exc:
            state.skip_reason = f"order {scenario.name} needs {exc.name or exc}: not installed"
        except TrtctxError as exc:
            state.error = f"order {scenario.name} could not be applied: {exc}"
        except Exception as exc:  # a user's recipe: its failure is the tests' error, not ours
            state.error = (
                f"order {scenario.name}'s recipe ({scenario.source}) raised "
                f"{type(exc).__name__}: {exc}"
            )
        return state


def set_for_speed(wanted: Mapping[str, str], environ: MutableMapping[str, str]) -> list[str]:
    """Set each of ``wanted`` that ``environ`` does not set already (a user's own value is kept:
    it is theirs to choose); a recipe step for each, saying which value the driver will read."""
    steps = []
    for key, value in wanted.items():
        if environ.get(key):  # an empty value is no choice: the driver's default applies
            steps.append(
                f"{key}={environ[key]} as the environment set it (the scenario sets {value} for "
                "speed alone where it is not set)"
            )
        else:
            environ[key] = value
            steps.append(f"{key}={value} set before cuInit, for speed alone (not the hazard's)")
    return steps


PROCESS = pytest.StashKey[Process]()


def process_of(config: pytest.Config) -> Process:
    """This process's :class:`Process` (made on first use; a forked worker starts a new one)."""
    found = config.stash.get(PROCESS, None)
    if found is None:
        found = config.stash[PROCESS] = Process()
    return found


def fresh_process(config: pytest.Config) -> Process:
    """A forked worker forgets its parent's (the parent never applied a scenario)."""
    config.stash[PROCESS] = Process()
    return config.stash[PROCESS]
