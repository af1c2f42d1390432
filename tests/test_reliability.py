"""Fault injection at the edges (docs/reliability.md): each case of the reliability issue, rerun as
a user would, must give a clear message and lose nothing. Process faults (crashes, hangs, pipes
held open, signals) are in test_forking.py; report-file faults in test_report.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import cpu_orders, run_pytest

RECORDS = """
def test_a(trtctx_order):
    open("ran", "w").close()
"""

as_root = pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes through permissions: read-only paths need a user"
)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--trtctx-report=adir", "option --trtctx-report: */adir is a folder; give the path*"),
        (
            "--trtctx-report=afile/r.json",
            "option --trtctx-report: */afile/r.json cannot be created: */afile is a file*",
        ),
        ("--trtctx-baseline=afile", "option --trtctx-baseline: */afile is a file, not a folder"),
        ("--trtctx-report=", "option --trtctx-report: empty value"),
        (
            "--trtctx-explore=lots",
            "option --trtctx-explore: expected a number of specs (0: off), got 'lots'",
        ),
    ],
)
def test_a_bad_output_path_stops_the_run_before_any_test(
    pytester: pytest.Pytester, arg: str, message: str
) -> None:
    (pytester.path / "adir").mkdir()
    (pytester.path / "afile").write_text("")
    pytester.makepyfile(RECORDS)
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", arg)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (pytester.path / "ran").exists()


@as_root
def test_a_read_only_output_folder_stops_the_run_before_any_test(pytester: pytest.Pytester) -> None:
    locked = pytester.path / "locked"
    locked.mkdir(mode=0o500)
    pytester.makepyfile(RECORDS)
    result = run_pytest(pytester, "--trtctx-report=locked/r.json", "--trtctx-baseline=locked/b")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: option --trtctx-report: *locked is not writable"])


def test_a_report_that_cannot_be_written_at_the_end_is_saved_elsewhere(
    pytester: pytest.Pytester,
) -> None:
    """The path was fine at the start; a test made it a folder. The summary is still printed and
    the report is saved to a file it names."""
    pytester.makepyfile(
        """
        import os
        def test_a(trtctx_order):
            os.mkdir("r.json")
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-report=r.json"
    )
    result.assert_outcomes(passed=1)
    line = next(x for x in result.stdout.lines if x.startswith("trtctx: report written to "))
    assert "r.json could not be written" in line
    saved = Path(line.split("written to ", 1)[1].split(" instead")[0])
    assert json.loads(saved.read_text())["tests"][0]["outcome"] == "passed"
    saved.unlink()
    result.stdout.fnmatch_lines(["*= trtctx summary =*"])


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"environment": {}, "tests": {"t": {"y": "ab', "damaged, not JSON (line 1, column *"),
        ("{}", "not a baseline: expected *"),
        ('{"tests": {"t": ["not", "hashes"]}}', "not a baseline: expected *"),
    ],
)
def test_a_damaged_baseline_is_an_error_naming_the_file_never_reset(
    pytester: pytest.Pytester, content: str, why: str
) -> None:
    folder = pytester.path / "bl" / "0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "baseline.json").write_text(content)
    pytester.makepyfile(RECORDS)
    result = run_pytest(pytester, "--trtctx-baseline=bl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --trtctx-baseline: */baseline.json: {why}"])
    assert (folder / "baseline.json").read_text() == content
    assert not (pytester.path / "ran").exists()


def test_a_bad_boolean_ini_value_names_its_key_and_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrtctx_rebuild = maybe\n")
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: ini key trtctx_rebuild in tox.ini: expected true or false (*), got 'maybe'"]
    )


def test_rebuild_in_a_clone_keeps_the_matrix(pytester: pytest.Pytester) -> None:
    """--trtctx-cache-dir=. in a clone: engines/ holds the matrix, which is not a cache entry."""
    (pytester.path / "engines").mkdir()
    matrix = pytester.path / "engines" / "conv_matrix.toml"
    matrix.write_text("schema = 1\n")
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, "--trtctx-cache-dir=.", "--trtctx-rebuild")
    result.assert_outcomes(passed=1)
    assert matrix.read_text() == "schema = 1\n"


@as_root
def test_a_read_only_cache_is_a_warning_on_rebuild(pytester: pytest.Pytester) -> None:
    key = "ab" * 32
    cubin = pytester.path / "cache" / "cubin"
    cubin.mkdir(parents=True)
    (cubin / f"{key}.cubin").write_bytes(b"\x7fELF")
    cubin.chmod(0o500)
    pytester.makepyfile("def test_x(): pass")
    try:
        result = run_pytest(pytester, "--trtctx-cache-dir=cache", "--trtctx-rebuild")
    finally:
        cubin.chmod(0o700)
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*trtctx: --trtctx-rebuild: *.cubin: not removed (Permission denied)"]
    )


MATRIX_ENTRY = """schema = 1

[[conv]]
name = "huge"
batch = {batch}
in_channels = 4
out_channels = 4
height = {height}
width = 8
kernel = 1
stride = 1
padding = 0
dilation = 1
groups = 1
dtype = "float32"
"""


@pytest.mark.parametrize(
    ("batch", "height", "what"),
    [
        (1, 2**62, "the input would hold"),
        (1_000_000_000, 1, "the input would hold"),
    ],
)
def test_a_matrix_entry_too_large_to_index_is_refused_once_naming_it(
    pytester: pytest.Pytester, batch: int, height: int, what: str
) -> None:
    pytester.makefile(".toml", conv_matrix=MATRIX_ENTRY.format(batch=batch, height=height))
    pytester.makepyfile("def test_x(trtctx_spec): pass")
    result = run_pytest(pytester, "--trtctx-matrix=conv_matrix.toml")
    result.assert_outcomes(errors=1)
    text = result.stdout.str()
    # Once in the collection error; pytest's own short summary may repeat the error's message
    # (pytest 9.2 prints it whole), which is pytest's echo, not a second report of ours.
    errors = text.split("short test summary info")[0]
    assert errors.count(f"[[conv]] #1 ('huge') at line 3: {what}") == 1, text
    assert "During handling of the above exception" not in text


@pytest.mark.parametrize("value", ["65", "100000000000000000000"])
def test_workers_have_a_ceiling(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, f"--trtctx-workers={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: option --trtctx-workers: expected a number of processes from 1 to 64, or 'auto'*"]
    )
