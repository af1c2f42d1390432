"""lazy-stall (pytest_trtctx.scenarios.lazy_stall): what it does not run, and why. Its runs on a
GPU are in tests/scenarios/test_process.py and the hazards job."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_trtctx.backends.cudnn import CudnnBackend
from pytest_trtctx.checks.outputs import Outputs
from pytest_trtctx.messages import MSG_LAZY_STALL_GIL
from pytest_trtctx.scenarios import lazy_stall
from pytest_trtctx.scenarios.base import Run, State
from pytest_trtctx.scenarios.process import Process
from pytest_trtctx.scenarios.runtime import Runtime, prebuild

from .fakes import SPEC, FakeBackend


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
    assert CudnnBackend.launch_holds_gil


@pytest.mark.parametrize("holds", [True, False])
def test_such_an_engine_is_never_built_neither_by_its_test_nor_by_a_prebuild(
    holds: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lazy-stall refuses a backend whose launch keeps the GIL (Scenario.refuses): its test
    skips before building, and a prebuild builds nothing for it; another backend builds."""
    pytest.importorskip("torch", reason="the runtime's host tensors are torch's")
    from pytest_trtctx import backends

    made: list[FakeBackend] = []

    def create(name: str, device: int, cache_dir: Any, slots: Any = None) -> FakeBackend:
        made.append(FakeBackend(holds=holds))
        return made[-1]

    monkeypatch.setattr(backends, "create", create)
    state = State(lazy_stall.SCENARIO, 0, 0, 0)
    process = Process(state)
    assert prebuild(process, [("fake", SPEC)], None) == (0 if holds else 1)
    runtime = Runtime(state, "fake", None, Outputs(), Process(state))
    if holds:
        with pytest.raises(pytest.skip.Exception) as skipped:
            runtime.build(SPEC)
        assert str(skipped.value.msg) == MSG_LAZY_STALL_GIL.format(backend="fake")
    else:
        runtime.build(SPEC)
    assert [len(b.built) for b in made] == ([0, 0] if holds else [1, 1])
