"""Reading a timeline of driver events (pytest_trtctx.trace.timeline), on recorded timelines: the
one a
CUPTI subscriber saw for NVIDIA/TensorRT#4335's shape on an H100 (docs/results-h100.md's source,
the project's facts), and its thread-hop and same-context variants."""

from __future__ import annotations

import dataclasses

from pytest_trtctx.trace.timeline import MAX_EVENTS, Event, Timeline

CREATED, PRIMARY, MODULE, FUNCTION = 0x226EA110, 0x22A7F560, 0x55, 0x66
TO_CUDA = 'x = torch.arange(4096.0).to("cuda")'


def issue_4335(thread: str = "MainThread", launch_in: int = PRIMARY) -> list[Event]:
    """cuCtxCreate (as import pycuda.autoinit), a module loaded there, torch's first .to("cuda"),
    then a launch: the order of events the callbacks reported."""
    return [
        Event("created", CREATED, "cuCtxCreate_v4", "test_x.py:45", "ctx = make_context()"),
        Event("current", CREATED, "cuCtxCreate_v4", "test_x.py:45", "ctx = make_context()"),
        Event("module", CREATED, "cuModuleLoadData", "test_x.py:49", module=MODULE),
        Event(
            "function",
            CREATED,
            "cuModuleGetFunction",
            "test_x.py:50",
            module=MODULE,
            function=FUNCTION,
            name="scale",
        ),
        Event("current", PRIMARY, "cuCtxSetCurrent", "test_x.py:51", TO_CUDA, thread=thread),
        Event(
            "created",
            PRIMARY,
            "cuDevicePrimaryCtxRetain",
            "test_x.py:51",
            TO_CUDA,
            thread=thread,
            primary_of=0,
        ),
        Event(
            "launch",
            launch_in,
            "cuLaunchKernel",
            "test_x.py:54",
            thread=thread,
            function=FUNCTION,
            name="scale",
            result="CUDA_ERROR_INVALID_HANDLE",
        ),
    ]


def test_the_4335_launch_is_named_with_every_line_that_led_to_it() -> None:
    timeline = Timeline(issue_4335())
    (mismatch,) = timeline.mismatches()
    assert timeline.explain(mismatch) == (
        "kernel `scale` of the module loaded at test_x.py:49 in context #1 (created by "
        "cuCtxCreate at test_x.py:45) was launched at test_x.py:54 while context #2 (the primary "
        "context of device 0) was current, made current by cuCtxSetCurrent at test_x.py:51: "
        f"`{TO_CUDA}`; the launch returned CUDA_ERROR_INVALID_HANDLE"
    )


def test_a_launch_on_another_thread_says_which() -> None:
    timeline = Timeline(issue_4335(thread="Thread-1"))
    (mismatch,) = timeline.mismatches()
    text = timeline.explain(mismatch)
    assert "was launched at test_x.py:54 on thread Thread-1 while context #2 (" in text


def test_a_launch_in_the_modules_own_context_is_no_mismatch() -> None:
    assert Timeline(issue_4335(launch_in=CREATED)).mismatches() == []


def test_contexts_are_named_never_shown_as_pointers_and_the_record_is_bounded() -> None:
    events = issue_4335() + [
        Event("current", PRIMARY, "cuCtxGetCurrent", f"test_x.py:{n}") for n in range(500)
    ]
    record = Timeline(events).record()
    assert len(record) == MAX_EVENTS
    assert {r["context"] for r in record} <= {"#1", "#2"}
    assert not any(hex(CREATED) in str(r) or str(CREATED) in str(r) for r in record)
    late = dataclasses.replace(issue_4335()[-1], where="test_x.py:900")
    kept = Timeline([*events, late]).record()
    assert (
        kept[-1]["kind"] == "launch" and kept[-1]["where"] == "test_x.py:900"
    )  # kept past the bound


def test_a_tests_record_keeps_its_own_events_and_what_its_mismatch_rests_on() -> None:
    """In a process's timeline (one process per order, engines prebuilt), a later test's record
    holds its own events and, from before it, only what its mismatch rests on: the contexts'
    making, the module's load, the switch."""
    earlier = [Event("current", PRIMARY, "cudaSetDevice", f"test_y.py:{n}") for n in range(50)]
    events = issue_4335()
    process = [*events[:4], *earlier, *events[4:]]  # the test starts at the switch to #2
    since = 4 + len(earlier)
    record = Timeline(process).record(since)
    # The recipe's making #1 current is not what the mismatch rests on; the rest is.
    assert [r["where"] for r in record] == [e.where for i, e in enumerate(events) if i != 1]
    assert not any(r["where"].startswith("test_y.py") for r in record)
    assert Timeline(process).mismatches(since + 3) == []  # its launch is before that index
