"""The worker side of isolation (pytest_trtctx.isolation.worker), apart from a real fork
(test_forking.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from pytest_trtctx.errors import OrderError
from pytest_trtctx.isolation import worker
from pytest_trtctx.scenarios import Registry, State
from pytest_trtctx.scenarios.process import Process

from ..conftest import cpu_orders, run_pytest


def test_the_group_message_is_one_json_line() -> None:
    blob = worker.group_message("driver-first", [3, 4])
    assert blob.endswith(b"\n") and blob.count(b"\n") == 1
    assert json.loads(blob) == {
        "order": "driver-first",
        "items": [3, 4],
        "note": None,
        "trace": False,
        "attempt": 0,
    }
    assert json.loads(worker.group_message(None, [0], "why"))["note"] == "why"
    assert json.loads(worker.group_message(None, [0], trace=True))["trace"] is True
    assert json.loads(worker.group_message(None, [0], attempt=2))["attempt"] == 2


def test_preload_imports_what_is_installed_and_initialises_nothing() -> None:
    code = (
        "import sys; from pytest_trtctx.isolation import worker;"
        "from pytest_trtctx.cuda import probe; print(worker.preload());"
        "ok, how = probe.cuda_untouched(); print(ok, how)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, clean = done.stdout.splitlines()
    expected = [
        name for name in worker.PRELOAD if importlib.util.find_spec(name.split(".")[0]) is not None
    ]
    assert eval(loaded) == expected
    assert clean.startswith("True"), clean


def _applied(name: str) -> Process:
    """A process where ``name``'s recipe ran (its state, as the recipe left it)."""
    return Process(State(Registry()[name], 0, torch_device=0, engine_device=0))


def test_only_the_first_test_under_an_order_meets_it_fresh() -> None:
    process = _applied("trt-first")
    applied = process.state
    assert worker.enter(process, "trt-first") == (applied, True)
    assert worker.enter(process, "trt-first") == (applied, False)
    assert worker.state_for(process, "trt-first") is applied and applied.uses == 2


@pytest.mark.parametrize("hazard", ["foreign-stream", "context-destroyed"])
def test_every_test_meets_a_hazard_in_how_the_engine_runs_fresh(hazard: str) -> None:
    """A foreign stream or a destroyed context fails every run, not only the first in a process
    (unlike an init order's switch, which torch's first call uses up): every test meets it."""
    process = _applied(hazard)
    assert [worker.enter(process, hazard)[1] for _ in range(3)] == [True, True, True]
    graph = _applied("graph-capture")  # driver-first's switch: used up once
    assert [worker.enter(graph, "graph-capture")[1] for _ in range(2)] == [True, False]


def test_a_test_under_an_order_this_process_did_not_apply_is_refused() -> None:
    with pytest.raises(
        OrderError, match=r"order trt-first was not applied in this process \(it runs no order\)"
    ):
        worker.enter(Process(), "trt-first")
    with pytest.raises(OrderError, match=r"\(it runs torch-first\)"):
        worker.state_for(_applied("torch-first"), "trt-first")


def test_the_channel_reads_frames_split_anywhere_among_foreign_bytes() -> None:
    """Every split of a stream (frames with and without attachments, foreign lines, half a
    foreign line running into a frame) gives the same messages and the same foreign count."""
    from pytest_trtctx.isolation import channel

    big = "é" * channel.ATTACH_FROM + "\udcff"  # non-ASCII, and a lone surrogate
    messages = [
        {"event": "start", "index": 0},
        {"event": "report", "index": 0, "data": {"sections": [["out", big], ["err", "e"]]}},
        {"event": "done", "index": 0},
    ]
    foreign = [b"junk line\n", b"", b"{half a line "]
    stream = b"".join(f + channel.encode(m) for f, m in zip(foreign, messages, strict=True))
    for step in (1, 7, 4096, len(stream)):
        reader = channel.Reader()
        got = [m for at in range(0, len(stream), step) for m in reader.feed(stream[at : at + step])]
        assert got == messages, step
        assert reader.take_foreign() == (sum(map(len, foreign)), b"".join(foreign))
        assert not reader.in_frame


#: Four statements, two branches; the tests below cover every line between them.
MYLIB = """
def f(x):
    if x:
        return 1
    return 2
"""

COVERING = """
import mylib

def test_one():
    assert mylib.f(1) == 1

def test_two():
    assert mylib.f(0) == 2
"""


def _covered(pytester: pytest.Pytester, *args: str) -> dict[str, object]:
    """Run the tests under pytest-cov; the JSON report's executed and missing lines of mylib."""
    out = pytester.path / "cov.json"
    out.unlink(missing_ok=True)
    result = run_pytest(
        pytester, "-p", "pytest_cov.plugin", "--cov=mylib", f"--cov-report=json:{out}", *args
    )
    result.assert_outcomes(passed=2)
    data = json.loads(out.read_text())["files"]["mylib.py"]
    return {"executed": data["executed_lines"], "missing": data["missing_lines"]}


@pytest.mark.parametrize(
    "mode",
    [
        ("--trtctx-isolate=test",),
        ("--trtctx-isolate=order",),
        ("--trtctx-order=torch-first", "--trtctx-isolate=order"),
        ("--trtctx-order=torch-first", "-p", "xdist", "-n", "2"),
    ],
    ids=["test", "order", "order-with-an-order", "xdist"],
)
def test_coverage_of_isolated_workers_equals_in_process(
    pytester: pytest.Pytester, mode: tuple[str, ...]
) -> None:
    pytest.importorskip("pytest_cov", reason="pytest-cov is in the [test] extra")
    pytester.makepyfile(mylib=MYLIB, test_eco=COVERING)
    pytester.syspathinsert()
    in_process = _covered(pytester)
    assert in_process["missing"] == [], in_process
    assert _covered(pytester, *cpu_orders(pytester), *mode) == in_process
    assert not list(pytester.path.glob(".coverage.*")), "a worker's data file was not combined"
