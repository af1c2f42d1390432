"""Scenarios as units: the registry, users' own scenarios through the ``pytest_trtctx_scenarios``
hook (the README's example under ``examples/own_scenario``), and their mistakes named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_trtctx.messages import MSG_BAD_SCENARIO, MSG_BAD_VALUE, MSG_NO_DRIVER
from pytest_trtctx.records.cli import compare
from pytest_trtctx.records.report import load
from pytest_trtctx.scenarios import HAZARDS, ORDERS, SHIPPED, Registry, Scenario

from ..conftest import cpu_orders, gpu_skip_reason, requires_gpu, run_pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "own_scenario"

#: A conftest registering one scenario, an init order of the user's, with a known failure.
OWN = """
from pytest_trtctx import KnownFailure, Scenario

def recipe(state):
    state.steps.append("our start")

SCENARIO = Scenario(
    name="our-start", kind="order", expected="pass", stands_for=("us#1",), recipe=recipe,
    first_call="ours", built_in="ours", run_from="same thread",
)

def pytest_trtctx_scenarios(config):
    return [SCENARIO]
"""

TESTS = """
import os

def test_a(trtctx_order):
    assert os.environ["TRTCTX_SCENARIO"] == trtctx_order
"""


def test_the_shipped_scenarios_are_the_init_orders_then_the_hazards() -> None:
    registry = Registry()
    assert registry.names() == ORDERS + HAZARDS == tuple(s.name for s in SHIPPED)
    assert registry.expand("all") == ORDERS and registry.expand("hazards") == HAZARDS
    assert registry.expand("nope") is None
    assert all(s.kind == "order" for s in SHIPPED[: len(ORDERS)])
    # Every shipped scenario that expects a failure says why, and which field report it is.
    assert all(s.stands_for for s in SHIPPED if s.known_failure is not None)


@pytest.mark.parametrize("isolate", ["test", "order"])
def test_a_registered_scenario_runs_reports_and_diffs_like_a_shipped_one(
    pytester: pytest.Pytester, isolate: str
) -> None:
    """Selected by name and by ``all``, met in a fresh process, a row in the summary, named in
    the report and the diff as the shipped ones are."""
    pytester.makeconftest(OWN)
    pytester.makepyfile(test_own=TESTS)
    report = pytester.path / "r.json"
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,our-start",
        f"--trtctx-isolate={isolate}",
        f"--trtctx-report={report}",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*trtctx summary*", "torch-first *", "our-start * 1 *"])
    tests = load(report)["tests"]
    assert sorted(t["order"] for t in tests) == ["our-start", "torch-first"]
    # all: every init order, the registered one last (the registry's order).
    listed = run_pytest(pytester, "--trtctx-order=all", "--collect-only", "-q")
    listed.stdout.fnmatch_lines([f"*test_a[[]{o}[]]" for o in (*ORDERS, "our-start")])
    # The diff reads it as any other order: the same test under it is compared, not added.
    again = pytester.path / "s.json"
    run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,our-start",
        f"--trtctx-report={again}",
    ).assert_outcomes(passed=2)
    diff = compare(load(report), load(again))
    assert not diff.added and not diff.removed and diff.same_outcome == 2


def test_a_registered_scenario_is_not_applied_where_there_is_no_gpu(
    pytester: pytest.Pytester,
) -> None:
    """Without the CPU stand-in the recipe really runs first in its worker: with no driver it is
    not applied, and its tests skip with the reason, as the shipped ones do."""
    reason = gpu_skip_reason()
    if reason is None:
        pytest.skip("a GPU is present: the scenario is applied there (the GPU test below)")
    pytester.makeconftest(OWN)
    pytester.makepyfile(test_own=TESTS)
    result = run_pytest(pytester, "--trtctx-order=our-start", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*" + MSG_NO_DRIVER.format(why="*")])
    result.stdout.fnmatch_lines(["our-start: not applied here*"])


@pytest.mark.parametrize(
    ("returned", "why"),
    [
        ("[object()]", "not a Scenario: <object object at *>"),
        ("[replace(SCENARIO, name='torch-first')]", "name 'torch-first' is taken (by *)"),
        ("[replace(SCENARIO, name='Our Start')]", "name 'Our Start' is not lowercase words*"),
        ("[replace(SCENARIO, name='all')]", "name 'all' is not lowercase words*reserved"),
        ("[SCENARIO, SCENARIO]", "name 'our-start' is taken (by pytest_trtctx_scenarios in *)"),
        ("42", None),
    ],
    ids=["not-a-scenario", "taken", "malformed", "reserved", "twice", "not-iterable"],
)
def test_a_bad_registration_stops_the_run_naming_the_conftest(
    pytester: pytest.Pytester, returned: str, why: str | None
) -> None:
    conftest = pytester.makeconftest(
        OWN.replace("return [SCENARIO]", f"return {returned}").replace(
            "from pytest_trtctx import",
            "from dataclasses import replace\nfrom pytest_trtctx import",
        )
    )
    result = run_pytest(pytester, "--trtctx-order=torch-first")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    where = f"pytest_trtctx_scenarios in {conftest}"
    if why is None:
        result.stderr.fnmatch_lines([f"*{where}: returned 42; return an iterable of Scenario*"])
    else:
        result.stderr.fnmatch_lines(["*" + MSG_BAD_SCENARIO.format(where=where, why=why)])


def test_an_unknown_name_lists_the_registered_ones(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(OWN)
    result = run_pytest(pytester, "--trtctx-order=their-start")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    allowed = ", ".join((*ORDERS, *HAZARDS, "our-start", "all", "hazards"))
    wanted = MSG_BAD_VALUE.format(
        where="option --trtctx-order", value="their-start", allowed=allowed
    )
    result.stderr.fnmatch_lines(["*" + wanted])


def test_the_example_registers_its_scenario(pytester: pytest.Pytester) -> None:
    """The README's example as a user runs it: its conftest's scenario is selected by name and
    by ``all``, and each of its tests is one of the matrix's specs under it."""
    shutil.copytree(EXAMPLE, pytester.path / "own_scenario")
    listed = run_pytest(
        pytester, "own_scenario", "--trtctx-order=all", "--collect-only", "-q", "-k", "f32"
    )
    assert listed.ret == 0, listed.stdout.str()
    ids = [line for line in listed.stdout.lines if "::test_conv_under_our_start[" in line]
    assert ids and any("service-start" in i for i in ids)
    assert {i.split("[")[1].split("-", 2)[0] for i in ids} >= {"torch", "service"}


@requires_gpu
def test_the_example_runs_under_its_scenario_on_the_gpu(pytester: pytest.Pytester) -> None:
    """On a GPU the example's recipe runs first in a fresh worker and the matrix passes there,
    as its declaration says; a report names it."""
    shutil.copytree(EXAMPLE, pytester.path / "own_scenario")
    report = pytester.path / "r.json"
    result = run_pytest(
        pytester,
        "own_scenario",
        "--trtctx-order=service-start",
        "--trtctx-isolate=order",
        f"--trtctx-report={report}",
        "-k",
        "f32",
    )
    assert result.ret == 0, result.stdout.str()[-3000:]
    tests = load(report)["tests"]
    assert tests and {t["order"] for t in tests} == {"service-start"}
    assert {t["outcome"] for t in tests} == {"passed"}, json.dumps(tests)[:2000]


def test_a_scenario_is_one_object_with_everything_the_run_reads() -> None:
    """The fields the plan, runtime, diagnosis, summary and suite read are on the object."""
    for scenario in SHIPPED:
        assert isinstance(scenario, Scenario)
        assert scenario.expected and scenario.first_call and scenario.run_from
        assert callable(scenario.recipe) and callable(scenario.run) and callable(scenario.fix)
        if scenario.kind == "hazard":
            assert scenario.cause, f"{scenario.name}: a hazard says its cause in words"
