"""What a plugin's summary will import is imported while the last workers run: only where that
plugin is loaded, never in an xdist worker, its warnings raised again at the summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_trtctx.isolation import summary_imports

from ..conftest import cpu_orders, run_pytest

SUMMARY_SEES = """
import sys, pytest

@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"hypothesis loaded at the summary: {'hypothesis' in sys.modules}")
"""


@pytest.mark.parametrize("plugin", ["on", "off"])
def test_what_a_plugin_imports_in_its_summary_is_imported_while_the_workers_run(
    pytester: pytest.Pytester, plugin: str
) -> None:
    """The pytest process never imports the test modules, so hypothesis' plugin would import
    hypothesis in its summary, after the last test (a second on a GPU host): it is imported while
    the last workers run instead (summary_imports.END_IMPORTS), and only where that plugin is
    loaded."""
    pytest.importorskip(
        "hypothesis", reason="hypothesis is not installed (pip install 'pytest-trtctx[explore]')"
    )
    pytester.makeconftest(SUMMARY_SEES)
    pytester.makepyfile("def test_a(trtctx_order): pass\ndef test_b(trtctx_order): pass\n")
    loaded = ["-p", "_hypothesis_pytestplugin"] if plugin == "on" else []
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first,torch-first", *loaded
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines([f"hypothesis loaded at the summary: {plugin == 'on'}"])


#: A plugin (the conftest) that imports a module in its summary, which warns on import.
WARNS_AT_SUMMARY = """
import sys
from pytest_trtctx.isolation import summary_imports

summary_imports.END_IMPORTS["conftest"] = ("trtctx_warns_on_import",)

def pytest_terminal_summary(terminalreporter):
    import trtctx_warns_on_import
"""


@pytest.mark.parametrize("filtered", [False, True])
def test_what_the_end_imports_warn_reaches_pytests_warnings_summary(
    pytester: pytest.Pytester, filtered: bool
) -> None:
    """A warning raised by an import made while the last workers run is raised again at the
    summary, where the plugin's own import would have raised it: in pytest's warnings summary,
    never in the progress line, and under pytest's filters (one that names the module too)."""
    pytester.makeconftest(WARNS_AT_SUMMARY)
    pytester.makepyfile(
        trtctx_warns_on_import="import warnings\n"
        "warnings.warn('trtctx: imported for the summary', UserWarning)\n"
    )
    pytester.makepyfile(test_two="def test_a(trtctx_order): pass\ndef test_b(trtctx_order): pass\n")
    ignore = ["-W", "ignore::UserWarning:trtctx_warns_on_import"] if filtered else []
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first,torch-first", *ignore
    )
    out = result.stdout.str()
    if filtered:
        result.assert_outcomes(passed=4)
        assert "imported for the summary" not in out + result.stderr.str()
        return
    result.assert_outcomes(passed=4, warnings=1)
    assert out.count("UserWarning: trtctx: imported for the summary") == 1, out
    assert out.index("warnings summary") < out.index("trtctx: imported for the summary"), out


def test_end_imports_ask_nothing_in_an_xdist_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """An xdist worker prints no summary: nothing is imported for one."""
    from types import SimpleNamespace

    monkeypatch.setattr(
        summary_imports, "END_IMPORTS", {"a_summary_plugin": ("trtctx_never_imported",)}
    )
    manager = SimpleNamespace(get_plugins=lambda: [SimpleNamespace(__name__="a_summary_plugin")])
    controller = SimpleNamespace(pluginmanager=manager)
    worker = SimpleNamespace(pluginmanager=manager, workerinput={"workerid": "gw0"})
    assert summary_imports.end_imports(controller) == ["trtctx_never_imported"]  # type: ignore[arg-type]
    assert summary_imports.end_imports(worker) == []  # type: ignore[arg-type]


def test_an_end_import_that_fails_is_left_to_the_plugin_and_sigterm_still_ends_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module that fails to import fails again where the plugin imports it (and is said
    there); pytest.exit, SIGTERM's way out of the run, is never swallowed."""

    (tmp_path / "trtctx_broken.py").write_text("import warnings\nwarnings.warn('w')\n1 / 0\n")
    (tmp_path / "trtctx_exits.py").write_text("import pytest\npytest.exit('SIGTERM', 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    caught = summary_imports.import_for_the_summary(["trtctx_broken"])
    # Its module is gone again (a failed import leaves none): the warning keeps its file.
    assert [(str(w.message), module) for w, module in caught] == [("w", None)]
    assert "trtctx_broken" not in sys.modules
    with pytest.raises(pytest.exit.Exception):
        summary_imports.import_for_the_summary(["trtctx_exits"])
