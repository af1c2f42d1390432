"""A scenario of a user's own: the order in which *our* service initialises CUDA.

Registered through the plugin's ``pytest_trtctx_scenarios`` hook, here in the conftest.py of the
folder pytest is started on (a conftest.py further down is loaded too late), or in a plugin. It is
then selected like the shipped ones and runs in a fresh process where CUDA was never initialised:

    pytest examples/own_scenario --trtctx-order=service-start
    pytest examples/own_scenario --trtctx-order=all      # every init order, ours included

The summary has a row for it, the report and ``pytest-trtctx diff`` name it as they name the
shipped ones. ``docs/architecture.md`` ("Adding a scenario") says what each field is for.
"""

from __future__ import annotations

from typing import Any

from pytest_trtctx import Scenario, State


def service_start(state: State) -> None:
    """What our service does at start, before any engine: its CUDA helper retains the device's
    primary context and makes it current (the runtime API's way), then torch warms up there."""
    import torch
    from cuda.bindings import driver

    err, device = driver.cuDeviceGet(state.engine_device)
    assert int(err) == 0, f"cuDeviceGet: {err}"
    err, context = driver.cuDevicePrimaryCtxRetain(device)
    assert int(err) == 0, f"cuDevicePrimaryCtxRetain: {err}"
    (err,) = driver.cuCtxSetCurrent(context)
    assert int(err) == 0, f"cuCtxSetCurrent: {err}"
    torch.zeros(1, device=f"cuda:{state.torch_device}")
    torch.cuda.synchronize(state.torch_device)
    state.steps.append("the service retained the primary context, then torch warmed up in it")


SERVICE_START = Scenario(
    name="service-start",
    kind="order",
    expected="pass: the service and torch share the primary context; engines are built in it",
    stands_for=("our-org/service#12",),
    recipe=service_start,
    first_call="primary context retained by the service's CUDA helper, then torch",
    built_in="primary context",
    run_from="same thread",
)


def pytest_trtctx_scenarios(config: Any) -> list[Scenario]:
    return [SERVICE_START]
