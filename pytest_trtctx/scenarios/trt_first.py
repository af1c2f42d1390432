"""trt-first: the runtime retains the primary context first; torch then shares it."""

from __future__ import annotations

from .base import ORDER, Scenario, State


def retain_primary(state: State) -> None:
    from ..cuda import driver

    driver.set_current(driver.retain_primary(state.engine_device))
    state.steps.append(
        f"the runtime retained device {state.engine_device}'s primary context and made it current"
    )


SCENARIO = Scenario(
    name="trt-first",
    kind=ORDER,
    expected="pass: the runtime retains the primary context first; torch then shares it",
    stands_for=(),
    recipe=retain_primary,
    first_call="primary context retained, current",
    built_in="primary context",
    run_from="same thread",
)
