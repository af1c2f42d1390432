"""``pytest-trtctx html`` and ``--trtctx-html``: the page is written where asked (or where the
terminal says), bad input is exit 2 with the reason, and a run's report keeps what a cell shows
(its checks; on a GPU, its context diagnosis)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pytest_trtctx.messages import MSG_HTML_WRITTEN, MSG_NEEDS_PACKAGE
from pytest_trtctx.records.cli import main as cli_main
from pytest_trtctx.records.report import load

from ..conftest import cpu_orders, requires_gpu, run_pytest
from .test_html_grid import RESULTS, _inline_data

HAZARDS = RESULTS / "report-h200-hazards.json.gz"


def test_html_writes_the_page_of_a_committed_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "page.html"
    assert cli_main(["html", str(HAZARDS), "-o", str(out)]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    data = _inline_data(out.read_bytes())
    assert len(data["tests"]) == len(load(HAZARDS)["tests"]) == 862


def test_html_diff_writes_the_upgrade_page(tmp_path: Path) -> None:
    out = tmp_path / "diff.html"
    base, new = RESULTS / "report-h100-final.json.gz", RESULTS / "report-h100-rtx.json.gz"
    assert cli_main(["html", "--diff", str(base), str(new), "-o", str(out)]) == 0
    data = _inline_data(out.read_bytes())
    assert data["diff"]["verdict"] == "REGRESSED" and len(data["diff"]["marks"]) == 410


def test_html_merges_the_reports_of_one_run(tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    a, b = RESULTS / "report-h200-matrix.json.gz", RESULTS / "report-h200-traced.json.gz"
    assert cli_main(["html", str(a), str(b), "-o", str(out)]) == 0
    assert _inline_data(out.read_bytes())["header"][-1] == ["merged from", f"{a}, {b}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give either the reports of one run (REPORT...) or --diff BASE NEW"),
        (["{tmp}/nothing.json"], "{tmp}/nothing.json: no such file"),
        (["{tmp}/bad.json"], "{tmp}/bad.json: not JSON (line 1, column 2"),
        ([str(HAZARDS), "-o", "{tmp}"], "-o: {tmp} is a folder; give the path of a file in it"),
        (
            [str(RESULTS / "report-h100-final.json.gz"), str(HAZARDS)],
            "another environment than",
        ),
    ],
)
def test_html_bad_input_is_exit_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "bad.json").write_text("{oops")
    argv = ["html", *(a.format(tmp=tmp_path) for a in args)]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "page.html")]
    assert cli_main(argv) == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "page.html").exists()


torch_or_skip = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None,
    reason=MSG_NEEDS_PACKAGE.format(package="torch", install="pip install torch"),
)

SUITE = """
import pytest, torch

def test_ok(trtctx_order, trtctx_outputs):
    trtctx_outputs.add("y", torch.arange(4.0))

@pytest.mark.trtctx_nonzero
def test_zeros(trtctx_order, trtctx_outputs):
    trtctx_outputs.add("y", torch.zeros(4))
"""


@torch_or_skip
def test_a_run_writes_its_page_and_says_where(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(SUITE)
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,trt-first",
        "--trtctx-html=out/page.html",
        "--trtctx-report=report.json",
    )
    result.assert_outcomes(passed=2, failed=2)
    page = pytester.path / "out" / "page.html"
    result.stdout.fnmatch_lines([f"trtctx: {MSG_HTML_WRITTEN.format(where=page)}"])
    data = _inline_data(page.read_bytes())
    report = load(pytester.path / "report.json")
    assert [t["n"] for t in data["tests"]] == [t["nodeid"] for t in report["tests"]]
    zeros = next(t for t in report["tests"] if t["nodeid"].endswith("::test_zeros[torch-first]"))
    assert zeros["checks"][0] == "[FAIL] nonzero: y: all 4 elements are zero"
    shown = next(t for t in data["tests"] if t["n"] == zeros["nodeid"])
    assert shown["c"] == zeros["checks"] and shown["s"] == "failed"


def test_an_unwritable_page_is_refused_before_any_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    pytester.mkdir("folder")
    result = run_pytest(pytester, "--trtctx-html=folder")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*option --trtctx-html: *folder is a folder; give the path*"])


def test_a_page_that_cannot_be_written_at_the_end_goes_to_the_temp_folder(
    pytester: pytest.Pytester,
) -> None:
    """The path became a folder during the run: the page is saved elsewhere, the terminal says
    where, and the run exits 6 (results not saved where asked)."""
    pytester.makepyfile("import os\ndef test_x():\n    os.mkdir('page.html')\n")
    result = run_pytest(pytester, "--trtctx-html=page.html")
    assert result.ret == 6
    line = next(x for x in result.stdout.lines if x.startswith("trtctx: HTML page written to"))
    where = Path(line.split(" written to ")[1].split(" instead:")[0])
    try:
        assert "could not be written" in line and where.read_bytes().startswith(b"<!doctype html>")
    finally:
        where.unlink()


@requires_gpu
def test_a_failure_s_context_diagnosis_reaches_the_report_and_the_page(
    pytester: pytest.Pytester,
) -> None:
    """On a GPU: a driver-first engine run fails in torch's context; the report keeps the
    ``trtctx contexts`` section and the page carries it to the cell."""
    pytester.makepyfile(
        """
        from pytest_trtctx.engines.spec import ConvSpec
        SPEC = ConvSpec("k3_f32", 1, 4, 8, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, "float32")
        def test_unfixed(trtctx):
            trtctx.check_conv(SPEC)
        """
    )
    result = run_pytest(
        pytester, "--trtctx-order=driver-first", "--trtctx-report=r.json", "--trtctx-html=p.html"
    )
    result.assert_outcomes(failed=1)
    test = json.loads((pytester.path / "r.json").read_text())["tests"][0]
    assert "current context on thread MainThread at the start of the call" in test["diagnosis"]
    assert (
        _inline_data((pytester.path / "p.html").read_bytes())["tests"][0]["dg"]
        == (test["diagnosis"])
    )


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_s_two_page_commands_write_their_pages(tmp_path: Path) -> None:
    """'The matrix at a glance': its commands, run as written (the output into tmp_path)."""
    section = README.read_text().partition("## The matrix at a glance")[2].partition("\n## ")[0]
    commands = [
        line.split("#")[0].split()
        for line in section.splitlines()
        if line.startswith("pytest-trtctx html ")
    ]
    assert len(commands) == 2
    root = README.parent
    for command in commands:
        args = [str(root / a) if a.startswith("docs/") else a for a in command[1:]]
        args[args.index("-o") + 1] = str(tmp_path / args[args.index("-o") + 1])
        assert cli_main(args) == 0, command
    assert {p.name for p in tmp_path.iterdir()} == {"run.html", "diff.html"}
    for image in re.findall(r"\]\((docs/images/[^)]+\.png)\)", section):
        assert (root / image).stat().st_size < 300_000, image
