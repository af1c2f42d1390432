"""Who initialised CUDA in the pytest process: where (before collection, in the collected tests'
conftest.py files) and which statement, found in a fresh Python; a test module that does it at
import is no culprit any more (it is imported in the workers, after the recipe).

Without a GPU nothing initialises CUDA, so these tests make torch say it did:
``torch.cuda.is_initialized = lambda: True`` stands in for ``torch.compile``, ``import triton`` or
``torch.cuda.init()`` (the proof, ``probe.cuda_untouched``, asks torch first). The GPU test does
it for real."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_trtctx.cuda.init_watch import find_statement
from pytest_trtctx.messages import (
    MSG_CUDA_TOUCHED,
    MSG_CULPRIT_CALL,
    MSG_CULPRIT_CALL_UNKNOWN,
    MSG_CULPRIT_CONFTESTS,
    MSG_CULPRIT_STARTUP,
)

from ..conftest import cpu_orders, requires_gpu, run_pytest

#: Line 4 makes the process count as CUDA-initialised (see the module's docstring).
TOUCHING_CONFTEST = """\
import torch

SETTING = 1
torch.cuda.is_initialized = lambda: True
AFTER = 2
"""

WHY = "torch.cuda.is_initialized() is True"


def _skip_line(culprit: str) -> str:
    return "SKIPPED [[]1[]] *" + MSG_CUDA_TOUCHED.format(why=WHY, culprit=culprit)


def test_a_conftest_loaded_before_collection_is_named_with_its_statement(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(TOUCHING_CONFTEST)
    pytester.makepyfile(test_x="def test_x(trtctx_order): pass\n")
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "-rs")
    result.assert_outcomes(skipped=1)
    call = MSG_CULPRIT_CALL.format(
        path="conftest.py", line=4, code="torch.cuda.is_initialized = lambda: True"
    )
    result.stdout.fnmatch_lines([_skip_line(f"{MSG_CULPRIT_STARTUP}; {call}")])


def test_a_conftest_of_the_collected_tests_is_named_with_its_statement(
    pytester: pytest.Pytester,
) -> None:
    sub = pytester.mkpydir("sub")
    (sub / "conftest.py").write_text(TOUCHING_CONFTEST)
    (sub / "test_x.py").write_text("def test_x(trtctx_order): pass\n")
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "-rs")
    result.assert_outcomes(skipped=1)
    call = MSG_CULPRIT_CALL.format(
        path="sub/conftest.py", line=4, code="torch.cuda.is_initialized = lambda: True"
    )
    result.stdout.fnmatch_lines([_skip_line(f"{MSG_CULPRIT_CONFTESTS}; {call}")])


def test_a_test_module_that_touches_cuda_at_import_runs(pytester: pytest.Pytester) -> None:
    """What made every test of the run skip before: the module is imported in its workers now."""
    pytester.makepyfile(
        test_a="def test_a(trtctx_order): pass\n",
        test_b=TOUCHING_CONFTEST + "def test_b(trtctx_order): pass\n",
    )
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "-rs")
    result.assert_outcomes(passed=2)


def test_the_statement_is_the_decorator_that_does_it(tmp_path: Path) -> None:
    """A decorator that initialises CUDA when it decorates (as ``@torch.compile`` does) is named
    at its own line, not the ``def`` under it."""
    module = tmp_path / "plugin_mod.py"
    module.write_text(
        textwrap.dedent(
            """\
            import torch

            def compiles(fn):
                torch.cuda.is_initialized = lambda: True
                return fn

            @compiles
            def model(x):
                return x
            """
        )
    )
    found = find_statement([(str(module), "plugin_mod")], str(tmp_path))
    assert found == MSG_CULPRIT_CALL.format(path="plugin_mod.py", line=7, code="@compiles")


def test_no_statement_found_is_said_not_guessed(tmp_path: Path) -> None:
    module = tmp_path / "clean_mod.py"
    module.write_text("X = 1\n")
    found = find_statement([(str(module), "clean_mod")], str(tmp_path))
    assert found == MSG_CULPRIT_CALL_UNKNOWN.format(why="none of clean_mod.py does it on its own")


@requires_gpu
def test_a_conftest_that_compiles_at_import_is_named_on_the_gpu(pytester: pytest.Pytester) -> None:
    """``torch.compile`` calls cuInit when it decorates (docs/isolation.md): in a conftest.py,
    which the pytest process imports, the plugin refuses and names that line."""
    pytester.makeconftest("import torch\n\n\n@torch.compile\ndef double(x):\n    return x * 2\n")
    pytester.makepyfile(test_x="def test_x(trtctx_order): pass\n")
    result = run_pytest(pytester, "--trtctx-order=torch-first", "-rs")
    result.assert_outcomes(skipped=1)
    call = MSG_CULPRIT_CALL.format(path="conftest.py", line=4, code="@torch.compile")
    result.stdout.fnmatch_lines(
        ["SKIPPED *" + MSG_CUDA_TOUCHED.format(why="*", culprit=f"{MSG_CULPRIT_STARTUP}; {call}")]
    )
