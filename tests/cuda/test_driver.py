"""The checked layer over the driver API (pytest_trtctx.cuda.driver): unwrapping results needs no
GPU; contexts are made and described on the GPU, in a child process (never in the one running the
tests, which must stay CUDA-clean)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("cuda.bindings.driver", reason="cuda-bindings is not installed")

from pytest_trtctx.cuda import driver
from pytest_trtctx.cuda.driver import ContextInfo
from pytest_trtctx.errors import CudaError, NoCudaDriver

from ..conftest import gpu_skip_reason, in_child, requires_gpu

SUCCESS = 0
INVALID_HANDLE = 400  # CUDA_ERROR_INVALID_HANDLE


def test_check_unwraps_what_a_call_returns() -> None:
    assert driver.check("cuA", (SUCCESS,)) is None
    assert driver.check("cuB", (SUCCESS, "ctx")) == "ctx"
    assert driver.check("cuC", (SUCCESS, 1, 2)) == (1, 2)
    assert driver.check("cuD", SUCCESS) is None


def test_check_raises_with_the_drivers_name_for_the_result() -> None:
    with pytest.raises(CudaError) as info:
        driver.check("cuLaunchKernel", (INVALID_HANDLE,))
    assert info.value.call == "cuLaunchKernel"
    assert info.value.result_name == "CUDA_ERROR_INVALID_HANDLE"
    assert str(info.value) == "cuLaunchKernel returned CUDA_ERROR_INVALID_HANDLE"


def test_an_unknown_result_is_shown_by_its_number() -> None:
    assert driver.result_name(123456) == "CUresult(123456)"


def test_context_info_describes_what_it_is() -> None:
    assert "no context" in ContextInfo(0, None, False, "T").describe()
    primary = ContextInfo(0x10, 1, True, "MainThread").describe()
    assert primary == "the primary context of device 1, 0x10, thread MainThread"
    created = ContextInfo(0x20, 0, False, "worker").describe()
    assert "a context of its own on device 0 (not the primary)" in created


@pytest.mark.skipif(gpu_skip_reason() is None, reason="this machine has a CUDA driver")
def test_without_a_driver_init_says_so() -> None:
    with pytest.raises(NoCudaDriver, match=r"^cuInit failed: \w+"):
        driver.init()


def _contexts() -> dict[str, Any]:
    """In a child: the primary context is described as such, a created one is not, and asking
    about an inactive primary does not create it."""
    before = driver.primary_if_active(0)
    created = driver.create_context(0)
    made = driver.describe_current(0)
    driver.set_current(driver.retain_primary(0))
    primary = driver.describe_current(0)
    driver.push(created)
    pushed = int(driver.current())
    popped = driver.pop()
    return {
        "inactive_before": before,
        "created": (made.handle == int(created), made.is_primary, made.device),
        "primary": (primary.is_primary, primary.handle == driver.primary_if_active(0)),
        "push_pop": (pushed == int(created), int(popped) == int(created)),
        "device": driver.context_device(created),
    }


@requires_gpu
def test_contexts_are_made_switched_and_described_on_the_gpu() -> None:
    got = in_child(_contexts)
    assert got["inactive_before"] == 0
    assert got["created"] == (True, False, 0)
    assert got["primary"] == (True, True)
    assert got["push_pop"] == (True, True)
    assert got["device"] == 0
