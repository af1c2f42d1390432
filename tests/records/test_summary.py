"""The plugin's header lines and the ``trtctx summary`` (pytest_trtctx.records.summary)."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from pytest_trtctx.backends.cudnn import PACKAGE
from pytest_trtctx.messages import INSTALL_CUDNN
from pytest_trtctx.records.report import load
from pytest_trtctx.records.summary import PLANS_LINE, PLANS_NOT_RUN
from pytest_trtctx.scenarios import HAZARDS

from ..conftest import (
    CPU_ORDERS,
    MATRIX_A_F32,
    MATRIX_B_F16,
    cpu_orders,
    needs_package,
    requires_gpu,
    run_pytest,
)

ROOT = Path(__file__).resolve().parents[2]

SUITE = """
import pytest

@pytest.mark.trtctx_known_failure("trt-first", r"RuntimeError: launch failed")
def test_known(trtctx_order):
    if trtctx_order == "trt-first":
        raise RuntimeError("launch failed: invalid handle")

def test_passes(trtctx_order): pass

def test_skips(trtctx_order):
    pytest.skip("not here")

def test_fails_under_torch_first(trtctx_order):
    assert trtctx_order != "torch-first", "boom"

def test_plain(): pass
"""


def test_summary_counts_each_test_once_per_order_and_lists_signatures(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(SUITE)
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,trt-first",
        "--trtctx-isolate=order",
    )
    result.assert_outcomes(passed=5, failed=1, skipped=2, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*= trtctx summary =*",
            "order*backend*passed*failed*known-failure*skipped",
            "torch-first * auto * 2 * 1 * 0 * 1",
            "trt-first * auto * 2 * 0 * 1 * 1",
            "most frequent failure signatures:",
        ]
    )
    for line in (
        "* 1  RuntimeError: launch failed: invalid handle  [[]known-failure[]]",
        "* 1  AssertionError: boom  [[]failed[]]",
    ):
        result.stdout.fnmatch_lines([line])
    assert PLANS_LINE.split(":")[0] not in result.stdout.str()  # no cuDNN slot ran


def test_no_summary_when_no_test_ran_under_an_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    result = run_pytest(pytester, *cpu_orders(pytester))
    result.assert_outcomes(passed=1)
    assert "trtctx summary" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["trtctx: no order selected: tests run as pytest runs them (select one with *"]
    )


def test_the_hazards_have_rows_of_their_own_in_columns_wide_enough(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_passes(trtctx_order): pass")
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=torch-first,hazards")
    result.assert_outcomes(passed=1 + len(HAZARDS))
    result.stdout.fnmatch_lines(
        [
            "order             backend * passed *",
            "torch-first       auto * 1 *",
            "foreign-stream    auto * 1 *",
            "graph-capture     auto * 1 *",
            "context-destroyed auto * 1 *",
            "fork-after-init   auto * 1 *",
            "lazy-stall        auto * 1 *",
            "device-hop        auto * 1 *",
        ]
    )


# cuDNN's plans per spec. ---------------------------------------------------------------------

MATRIX = "schema = 1\n" + MATRIX_A_F32 + MATRIX_B_F16

#: What cuDNN's heuristics offer per spec, as each spec's engine holds its plans: whether each
#: plan built (False: the frontend declined it).
OFFERED = {"a_f32": [True, False, True, True, True], "b_f16": [True]}

#: CPU_ORDERS, and cuDNN's part of a GPU stood in for: the backend chosen as on a GPU, and each
#: spec's engine, holding the plans of OFFERED, prebuilt in the worker after the order's recipe
#: (as --trtctx-prebuild leaves them). Each test then builds through the real runtime: its slot
#: picks its plan (or skips), and its report carries the record, as on a GPU.
OFFERED_PLANS = (
    CPU_ORDERS
    + f"""
import pytest_trtctx.scenarios.runtime as runtime
from pytest_trtctx.backends.base import Engine
from pytest_trtctx.engines.matrix import load_matrix

OFFERED = {OFFERED!r}

runtime.choose_backend = lambda planned, state: ("cudnn", "selected")

def apply_and_offer(config, order, culprit="", *, trace=False):
    state = apply_without_cuda(config, order, culprit, trace=trace)
    for spec in load_matrix(settings_of(config).matrix.value):
        plans = [
            {{"index": i, "name": f"eng{{i}}", "built": built,
              "error": None if built else "cudnnGraphNotSupportedError: no"}}
            for i, built in enumerate(OFFERED[spec.name])
        ]
        details = {{"plans": plans, "plan": None}}
        engine = Engine(spec, 0, None, None, handle=object(), details=details)
        process_of(config).prebuilt[("cudnn", spec.name)] = engine
    return state

worker.apply_order = apply_and_offer
"""
)

PLAN_SUITE = """
def test_conv(trtctx, trtctx_spec):
    trtctx.build(trtctx_spec)
"""


def _plans_suite(pytester: pytest.Pytester) -> tuple[str, str]:
    (pytester.path / "engines").mkdir()
    (pytester.path / "engines" / "conv_matrix.toml").write_text(MATRIX)
    pytester.makepyfile(test_plans=PLAN_SUITE, trtctx_offered_plans=OFFERED_PLANS)
    return ("-p", "trtctx_offered_plans", "--trtctx-backend=cudnn", "--trtctx-cudnn-plans=3")


def test_the_summary_says_how_many_cudnn_plans_ran_per_spec_once_over_the_orders(
    pytester: pytest.Pytester,
) -> None:
    """Two orders, one process each (the main job's mode), three slots: a_f32's five plans are
    plan0 and plan2 run, plan1 declined, plans 3 and 4 past the slots; b_f16's one plan ran and
    its slots 1 and 2 stood for none. Each is counted once, not once per order."""
    result = run_pytest(
        pytester,
        *_plans_suite(pytester),
        "--trtctx-order=torch-first,trt-first",
        "--trtctx-isolate=order",
        "--trtctx-report=r.json",
    )
    result.assert_outcomes(passed=6, skipped=6)
    line = PLANS_LINE.format(
        specs="2 specs", offered=6, per_spec="1-5", ran=3, declined=1, past=2, slots=3
    )
    assert line in result.stdout.lines, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*= trtctx summary =*",
            "torch-first * cudnn * 3 * 0 * 0 * 3",
            "trt-first * cudnn * 3 * 0 * 0 * 3",
            line,
        ]
    )
    engines = {t["nodeid"]: t.get("engine") for t in load(pytester.path / "r.json")["tests"]}
    declined = engines["test_plans.py::test_conv[torch-first-a_f32-plan1]"]
    past = engines["test_plans.py::test_conv[trt-first-b_f16-plan2]"]
    assert declined == {
        "backend": "cudnn", "plan": 1, "plans": 5, "name": "eng1",
        "declined": "cudnnGraphNotSupportedError: no",
    }  # fmt: skip
    assert past == {"backend": "cudnn", "plan": 2, "plans": 1, "name": None}


def test_under_xdist_the_controller_counts_the_plans_and_says_which_slots_did_not_run(
    pytester: pytest.Pytester,
) -> None:
    """The records reach an xdist controller through its workers' reports; a slot deselected
    stands for a plan offered that neither ran nor was declined, and the line says so."""
    result = run_pytest(
        pytester,
        *_plans_suite(pytester),
        "--trtctx-order=torch-first",
        "-p",
        "xdist",
        "-n",
        "2",
        "-k",
        "not plan2",
    )
    result.assert_outcomes(passed=2, skipped=2)
    line = PLANS_LINE.format(
        specs="2 specs", offered=6, per_spec="1-5", ran=2, declined=1, past=2, slots=3
    )
    assert line + PLANS_NOT_RUN.format(count=1) in result.stdout.lines, result.stdout.str()


def _pattern(template: str, **groups: str) -> re.Pattern[str]:
    """A regular expression for ``template``'s lines: its text as it is, each field the
    expression given for it, else a number captured under the field's name."""
    parts = []
    for text, name, _spec, _conversion in string.Formatter().parse(template):
        parts.append(re.escape(text))
        if name is not None:
            parts.append(groups.get(name, rf"(?P<{name}>\d+)"))
    return re.compile("".join(parts))


@pytest.mark.parametrize("doc", ["README.md", "docs/orders.md"])
def test_the_docs_show_the_plans_line_as_the_summary_prints_it(doc: str) -> None:
    text = " ".join((ROOT / doc).read_text().split())  # a line wrapped in the source is one
    pattern = _pattern(PLANS_LINE, specs=r"\d+ specs?", per_spec=r"\d+(?:-\d+)?")
    assert pattern.search(text), f"{doc} shows no line of the form {PLANS_LINE!r}"


needs_frontend = needs_package("cudnn", PACKAGE, INSTALL_CUDNN)

GPU_SUITE = """
def test_conv(trtctx, trtctx_spec):
    trtctx.check_conv(trtctx_spec)
"""


@requires_gpu
@needs_frontend
def test_on_a_gpu_the_summary_counts_the_plans_cudnn_offered_for_one_spec(
    pytester: pytest.Pytester,
) -> None:
    """One spec under torch-first with two slots: cuDNN's real plans; whatever it offers, the
    line adds up (each slot ran or was declined, the rest lie past the slots)."""
    (pytester.path / "engines").mkdir()
    (pytester.path / "engines" / "conv_matrix.toml").write_text("schema = 1\n" + MATRIX_A_F32)
    pytester.makepyfile(test_gpu_plans=GPU_SUITE)
    result = run_pytest(
        pytester,
        "--trtctx-backend=cudnn",
        "--trtctx-order=torch-first",
        "--trtctx-cudnn-plans=2",
        "--trtctx-isolate=order",
    )
    pattern = _pattern(PLANS_LINE, specs="1 spec", per_spec=r"(?P<per_spec>\d+)", slots="2")
    found = [m for m in map(pattern.fullmatch, result.stdout.lines) if m]
    assert len(found) == 1, result.stdout.str()
    got = {k: int(v) for k, v in found[0].groupdict().items()}
    assert got["offered"] == got["per_spec"] >= 1
    assert got["ran"] >= 1 and got["ran"] + got["declined"] == min(got["offered"], 2)
    assert got["past"] == max(0, got["offered"] - 2)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == got["ran"], outcomes
    assert outcomes.get("skipped", 0) == 2 - got["ran"], outcomes
