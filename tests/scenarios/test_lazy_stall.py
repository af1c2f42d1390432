"""lazy-stall (pytest_trtctx.scenarios.lazy_stall): what it does not run, and why. Its runs on a
GPU are in tests/scenarios/test_process.py and the hazards job."""

from __future__ import annotations

import pytest

from pytest_trtctx.backends.cudnn import CudnnBackend
from pytest_trtctx.messages import MSG_LAZY_STALL_GIL
from pytest_trtctx.scenarios import lazy_stall
from pytest_trtctx.scenarios.base import Run, State


@pytest.mark.parametrize("fixed", [False, True])
def test_an_engine_whose_launch_keeps_the_gil_is_skipped_before_any_cuda_call(
    fixed: bool,
) -> None:
    """cuDNN's launch keeps the GIL while the driver makes it wait for the polling kernel, whose
    release is a Python thread: plain and fixed, the run would deadlock (seen on a GPU), so it
    skips saying so, before the poller is launched (no CUDA call is made here)."""
    state = State(lazy_stall.SCENARIO, 0, 0, 0)
    run = Run(state, CudnnBackend(0, None), engine=None, x=None, y=None)  # type: ignore[arg-type]
    go = lazy_stall.SCENARIO.fix if fixed else lazy_stall.SCENARIO.run
    with pytest.raises(pytest.skip.Exception) as skipped:
        go(run)
    assert str(skipped.value.msg) == MSG_LAZY_STALL_GIL.format(backend="cudnn")
    assert "cudnn" in lazy_stall.HOLDS_THE_GIL
