"""The likely-cause sentences for each way contexts can disagree (pure logic, no CUDA)."""

from __future__ import annotations

from pytest_trtctx.backends.base import Engine, ExecResult
from pytest_trtctx.cuda.driver import ContextInfo
from pytest_trtctx.scenarios import Registry, State
from pytest_trtctx.scenarios.diagnosis import diagnose, likely_cause


def OrderState(name: str, *args: object) -> State:
    return State(Registry()[name], *args)  # type: ignore[arg-type]


CREATED = ContextInfo(0x1000, 0, False, "MainThread")
PRIMARY = ContextInfo(0x2000, 0, True, "MainThread")


def _engine(ctx: ContextInfo) -> Engine:
    return Engine(spec=None, device=0, context=None, built_in=ctx)  # type: ignore[arg-type]


def _result(ctx: ContextInfo | None) -> ExecResult:
    return ExecResult(
        "CUDA_ERROR_INVALID_HANDLE",
        False,
        ctx,
        ["cuLaunchKernel returned CUDA_ERROR_INVALID_HANDLE"],
        "CUDA_ERROR_INVALID_HANDLE",
    )


def test_driver_first_blames_torchs_first_allocation() -> None:
    state = OrderState("driver-first", 0, 0, 0, ["cuCtxCreate on device 0"])
    text = likely_cause(state, _engine(CREATED), _result(PRIMARY))
    assert text.startswith(
        "torch (its first CUDA allocation or set_device) made the primary context current"
    )
    assert "push the engine's context around execution" in text


def test_each_hazard_says_its_own_cause_and_fix() -> None:
    from pytest_trtctx.scenarios import context_destroyed, foreign_stream, graph_capture

    CONTEXT_DESTROYED = context_destroyed.SCENARIO.name
    FOREIGN_STREAM = foreign_stream.SCENARIO.name
    GRAPH_CAPTURE = graph_capture.SCENARIO.name

    said = {
        order: likely_cause(OrderState(order, 0, 0, 0), _engine(PRIMARY), _result(PRIMARY))
        for order in (FOREIGN_STREAM, GRAPH_CAPTURE, CONTEXT_DESTROYED)
    }
    assert "a stream made in another context" in said[FOREIGN_STREAM]
    assert "No push fixes a capture" in said[GRAPH_CAPTURE]
    assert "context was destroyed" in said[CONTEXT_DESTROYED]
    assert all("trtctx_fix_context" in text for text in said.values())


def test_thread_hop_names_both_threads() -> None:
    state = OrderState("thread-hop", 0, 0, 0)
    ran = ContextInfo(0x2000, 0, True, "trtctx-exec")
    text = likely_cause(state, _engine(CREATED), _result(ran))
    assert "built on thread MainThread" in text and "thread trtctx-exec had no context" in text


def test_other_device() -> None:
    ran = ContextInfo(0x3000, 1, True, "MainThread")
    text = likely_cause(None, _engine(PRIMARY), _result(ran))
    assert text.startswith("The engine lives on device 0 but device 1's context was current")


def test_same_context_is_not_a_context_bug() -> None:
    text = likely_cause(None, _engine(PRIMARY), _result(PRIMARY))
    assert "not a context mismatch" in text


def test_diagnose_lists_order_contexts_and_fix_state() -> None:
    state = OrderState("driver-first", 0, 0, 0, ["cuCtxCreate on device 0"])
    text = diagnose(state, _engine(CREATED), _result(PRIMARY), fixed=False)
    assert "order: driver-first (cuCtxCreate on device 0)" in text
    assert "engine built in: a context of its own on device 0 (not the primary), 0x1000" in text
    assert "ran in: the primary context of device 0, 0x2000, thread MainThread" in text
    assert "(trtctx_fix_context): no" in text
    assert "backend errors: cuLaunchKernel returned CUDA_ERROR_INVALID_HANDLE" in text
