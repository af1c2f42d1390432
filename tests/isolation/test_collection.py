"""Collection where tests are forked: the pytest process never imports a test module; a child
collects, each worker collects its own tests after its order's recipe, and what pytest shows
(node ids, -k, --lf, collection errors, xdist) is what plain pytest shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_trtctx.messages import MSG_COLLECTION_DIED, MSG_NOT_COLLECTED_IN_WORKER

from ..conftest import cpu_orders, requires_gpu, run_pytest

#: A conftest the pytest process imports: it records every process that imported it.
WHO_IMPORTS_CONFTEST = """
import os
with open("conftest-pids.txt", "a") as fh:
    fh.write(f"{os.getpid()}\\n")
"""

#: A test module that records, at import, its process and the order applied there before it.
WHO_IMPORTS_MODULE = """
import os

with open("module-pids.txt", "a") as fh:
    applied = os.environ.get("TRTCTX_SCENARIO", "none")
    fh.write(f"{os.getpid()} {applied}\\n")

def test_a(trtctx_order): pass
def test_b(trtctx_order): pass
"""


def _lines(pytester: pytest.Pytester, name: str) -> list[list[str]]:
    return [line.split() for line in (pytester.path / name).read_text().splitlines()]


@pytest.mark.parametrize(
    ("how", "forks"),
    [
        (("--trtctx-isolate=test",), 4),
        (("--trtctx-isolate=order",), 2),
        (("-p", "xdist", "-n", "2"), 4),
    ],
    ids=["isolate-test", "isolate-order", "xdist-n2"],
)
def test_the_pytest_process_never_imports_a_test_module(
    pytester: pytest.Pytester, how: tuple[str, ...], forks: int
) -> None:
    pytester.makeconftest(WHO_IMPORTS_CONFTEST)
    pytester.makepyfile(test_who=WHO_IMPORTS_MODULE)
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first,trt-first", *how
    )
    result.assert_outcomes(passed=4)
    pytest_processes = {pid for (pid,) in _lines(pytester, "conftest-pids.txt")}
    imports = _lines(pytester, "module-pids.txt")
    # Never where the conftest was imported: the pytest process (and xdist's workers).
    assert not pytest_processes & {pid for pid, _order in imports}, (pytest_processes, imports)
    # Each worker imported the module after its order's recipe; the collecting children (one,
    # or one per xdist worker) before any.
    ordered = [order for _pid, order in imports if order != "none"]
    assert sorted(ordered) == sorted(["torch-first", "trt-first"] * (forks // 2)), imports
    collectors = 2 if "xdist" in how else 1
    assert [order for _pid, order in imports].count("none") == collectors, imports


def test_forked_tests_without_an_order_are_collected_the_same_way(
    pytester: pytest.Pytester,
) -> None:
    """``--trtctx-isolate=test`` with no order still forks every test: one behaviour, so the
    module is imported in the workers here too."""
    pytester.makeconftest(WHO_IMPORTS_CONFTEST)
    pytester.makepyfile(test_who=WHO_IMPORTS_MODULE.replace("trtctx_order", ""))
    result = run_pytest(pytester, "--trtctx-isolate=test")
    result.assert_outcomes(passed=2)
    pytest_processes = {pid for (pid,) in _lines(pytester, "conftest-pids.txt")}
    imports = _lines(pytester, "module-pids.txt")
    assert len(imports) == 3, imports  # the collecting child, then one per test
    assert not pytest_processes & {pid for pid, _order in imports}, (pytest_processes, imports)


SUITE = """
import pytest

@pytest.mark.parametrize("x", [1, 2, "a b", "c/d", "e::f"])
def test_param(x): pass

class TestGroup:
    def test_one(self): pass
    @pytest.mark.slow
    def test_two(self): pass

def test_fails(): assert False
"""

RESULT = re.compile(r"^(PASSED|FAILED|SKIPPED|ERROR) (\S.*?)(?: - .*)?$", re.M)


def _results(result: pytest.RunResult) -> list[tuple[str, str]]:
    return sorted(RESULT.findall(result.stdout.str()))


@pytest.mark.parametrize(
    "select",
    [(), ("-k", "param and not 2"), ("-k", "TestGroup or fails"), ("-m", "not slow")],
    ids=["all", "k-param", "k-class", "m-not-slow"],
)
def test_node_ids_and_selection_are_plain_pytests(
    pytester: pytest.Pytester, select: tuple[str, ...]
) -> None:
    pytester.makeini("[pytest]\nmarkers = slow: a slow test\n")
    pytester.makepyfile(test_suite=SUITE)
    plain = run_pytest(pytester, "-rA", *select)
    forked = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", "-rA", *select
    )
    assert _results(forked) == _results(plain) != []
    assert forked.parseoutcomes() == plain.parseoutcomes()
    collected = re.compile(r"^collected .*$", re.M)
    assert collected.findall(forked.stdout.str()) == collected.findall(plain.stdout.str())


def test_last_failed_reruns_what_plain_pytest_reruns(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE, test_other="def test_other(): pass\n")
    args = (*cpu_orders(pytester), "--trtctx-order=torch-first", "-rA")
    first = run_pytest(pytester, *args)
    first.assert_outcomes(passed=8, failed=1)
    again = run_pytest(pytester, *args, "--lf")
    plain = run_pytest(pytester, "-rA", "--lf")
    assert _results(again) == _results(plain) == [("FAILED", "test_suite.py::test_fails")]
    assert again.parseoutcomes() == plain.parseoutcomes()
    # --lf's own line, made by its collection hook in the collecting child.
    again.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure (skipped 1 file)"])
    header = re.compile(r"^(?:run-last-failure|collected) .*$", re.M)
    assert header.findall(again.stdout.str()) == header.findall(plain.stdout.str())


BROKEN = "import no_such_module_here\ndef test_never(): pass\n"


def test_a_package_named_with_pyargs_runs_its_tests_in_workers(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--pyargs pkg`` from an empty folder (the installed suite's way) names node ids from the
    package, which a worker collecting the file by its path would name otherwise: each test is
    found all the same, and reported under the node id plain pytest shows."""
    pkg = pytester.mkpydir("suitepkg")
    (pkg / "test_inside.py").write_text("def test_a(trtctx_order): pass\ndef test_b(): pass\n")
    pytester.syspathinsert()
    cpu = cpu_orders(pytester)
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    plain = run_pytest(pytester, "--pyargs", "suitepkg", "-rA", "--trtctx-isolate=none")
    ran = {line for line in plain.stdout.lines if line.startswith("PASSED ")}
    assert len(ran) == 1, plain.stdout.str()  # test_a asks for an order: [no-order]
    for isolate in ("test", "order"):
        result = run_pytest(
            pytester, *cpu, "--pyargs", "suitepkg", "-rA",
            "--trtctx-order=torch-first", f"--trtctx-isolate={isolate}",
        )  # fmt: skip
        result.assert_outcomes(passed=2)
        passed = {line for line in result.stdout.lines if line.startswith("PASSED ")}
        assert ran < passed and len(passed) == 2, result.stdout.str()


@pytest.mark.parametrize("go_on", [False, True], ids=["stops", "continue-on-errors"])
def test_a_collection_error_is_reported_as_pytest_reports_it(
    pytester: pytest.Pytester, go_on: bool
) -> None:
    pytester.makepyfile(test_broken=BROKEN, test_fine="def test_fine(): pass\n")
    more = ("--continue-on-collection-errors",) if go_on else ()
    plain = run_pytest(pytester, *more)
    forked = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", *more)
    assert forked.ret == plain.ret
    assert forked.parseoutcomes() == plain.parseoutcomes()
    for wanted in (
        "*_ ERROR collecting test_broken.py _*",
        "E   ModuleNotFoundError: No module named 'no_such_module_here'",
        "ERROR test_broken.py*",
    ):
        forked.stdout.fnmatch_lines([wanted])
    if go_on:
        forked.assert_outcomes(passed=1, errors=1)
    else:
        forked.stdout.fnmatch_lines(["*Interrupted: 1 error during collection*"])


#: Parametrised by what the process saw at import: the collecting child (no order applied) makes
#: two tests; a worker, after its recipe, one.
DIFFERS = """
import os
import pytest

CASES = [1] if os.environ.get("TRTCTX_SCENARIO") else [1, 2]

@pytest.mark.parametrize("x", CASES)
def test_case(x, trtctx_order): pass
"""


@pytest.mark.parametrize("isolate", ["test", "order"])
def test_a_module_that_collects_differently_in_the_worker_is_named(
    pytester: pytest.Pytester, isolate: str
) -> None:
    pytester.makepyfile(test_differs=DIFFERS)
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", f"--trtctx-isolate={isolate}"
    )
    result.assert_outcomes(passed=1, errors=1)
    nodeid = "test_differs.py::test_case[torch-first-2]"
    message = MSG_NOT_COLLECTED_IN_WORKER.format(nodeid=nodeid, why="*").splitlines()[0]
    result.stdout.fnmatch_lines(["*_ ERROR at setup of test_case[[]torch-first-2[]] _*"])
    result.stdout.fnmatch_lines(["*" + message.replace("[", "[[]")])


def test_a_warning_at_collection_reaches_the_summary(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_warns="import warnings\nwarnings.warn('said at import')\ndef test_x(): pass\n"
    )
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=torch-first")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*test_warns.py:2: UserWarning: said at import"])


def test_a_collection_that_kills_its_process_ends_the_run_saying_so(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_dies="import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
        test_fine="def test_fine(): pass\n",
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", "-p", "no:faulthandler"
    )
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    assert MSG_COLLECTION_DIED.format(how="killed by signal 11 (SIGSEGV)") in result.stdout.str()


# GPU: modules that touch CUDA at import now meet their order -----------------------------------

#: A module-level ``@torch.compile`` function (``torch.compile`` calls cuInit when it decorates).
#: The first test makes its first call while a created context is pushed, as a TensorRT runner's
#: ``ctx.push()`` around torch post-processing does: Triton loads the compiled kernel into that
#: context, and the next call, after the pop, fails (invalid resource handle). The second test
#: keeps compiled work outside the push: the fix. Seen on one H200 (torch 2.11.0+cu130) without
#: the plugin: loaded under the created context, then run in torch's, "CUDA driver error: invalid
#: resource handle"; loaded in torch's context and run under the pushed one, no error (the
#: compiled launcher); a plain Triton kernel, loaded in torch's and run under the pushed one,
#: "Triton Error [CUDA]: invalid resource handle".
COMPILED_SUITE = """
import torch
from pytest_trtctx.cuda import driver

@torch.compile
def post(x):
    return torch.relu(x) * 2 + 1

def _created_context():
    driver.api().cuInit(0)
    return driver.create_context(torch.cuda.current_device())

def _pop():
    driver.check("cuCtxPopCurrent", driver.api().cuCtxPopCurrent())

def test_compiled_first_under_a_pushed_context(trtctx_order):
    x = torch.randn(333, 7, device="cuda")
    ctx = _created_context()  # current now, as inside the runner's ctx.push()
    try:
        post(x)
    finally:
        _pop()
    assert torch.allclose(post(x), torch.relu(x) * 2 + 1)
    driver.destroy_context(ctx)

def test_compiled_outside_the_push(trtctx_order):
    x = torch.randn(333, 7, device="cuda")
    ctx = _created_context()
    _pop()
    assert torch.allclose(post(x), torch.relu(x) * 2 + 1)
    assert torch.allclose(post(x), torch.relu(x) * 2 + 1)
    driver.destroy_context(ctx)
"""


@requires_gpu
def test_a_module_level_torch_compile_runs_under_torch_first(pytester: pytest.Pytester) -> None:
    """Before: importing the module initialised CUDA in the pytest process and every test of
    the run was skipped (seen on one H200 with the plugin before this change). Now it is imported
    in each test's worker, after the recipe: the context bug fails, the fixed test passes (each
    test alone, in a fresh process, behaved so on the H200; with one process for both, the
    second reuses the first's compiled kernel and fails too, so this runs per test)."""
    pytester.makepyfile(test_compiled=COMPILED_SUITE)
    result = run_pytest(
        pytester,
        "--trtctx-order=torch-first",
        "--trtctx-isolate=test",
        "--trtctx-timeout=300",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=1, failed=1)
    header = "*_ test_compiled_first_under_a_pushed_context[[]torch-first[]] _*"
    result.stdout.fnmatch_lines([header])
    result.stdout.fnmatch_lines(["*invalid resource handle*"])


#: What ``import pycuda.autoinit`` does at import (cuInit, then a context of its own made
#: current), with cuda.bindings; then the README's own-engine example's engine, loaded in that
#: context, run after torch's first CUDA call.
AUTOINIT_SUITE = """
import pytest
import torch
from pytest_trtctx.cuda import driver
from test_own_engine import MyEngine

driver.api().cuInit(0)
AUTOINIT_CONTEXT = driver.create_context(0)

@pytest.mark.trtctx_nonzero
@pytest.mark.parametrize("push", [False, True], ids=["as-is", "pushed"])
def test_engine_after_autoinit(trtctx_order, trtctx_outputs, push):
    engine = MyEngine()
    x = torch.arange(4096, dtype=torch.float32).to("cuda")
    y = trtctx_outputs.empty((4096,), dtype=torch.float32, device="cuda")
    engine.run(x, y, 4096, push)
    trtctx_outputs.add("y", y)
"""


@requires_gpu
def test_autoinit_at_import_reproduces_driver_first(pytester: pytest.Pytester) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "test_own_engine.py"
    pytester.makepyfile(test_own_engine=example.read_text(), test_autoinit=AUTOINIT_SUITE)
    result = run_pytest(
        pytester, "test_autoinit.py", "--trtctx-order=driver-first", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_engine_after_autoinit[[]driver-first-as-is[]] _*",
            "*sentinel: y: 4096 of 4096 elements never written",
        ]
    )
