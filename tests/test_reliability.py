"""Fault injection at the edges (docs/reliability.md): each case of the reliability issue, rerun as
a user would, must give a clear message and lose nothing. Process faults (crashes, hangs, pipes
held open, signals) are in test_forking.py; report-file faults in test_report.py."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_trtctx.checks.outcomes import EXIT_UNSAVED
from pytest_trtctx.records.baseline import LOCK_NAME
from pytest_trtctx.records.cli import EXIT_INCOMPLETE
from pytest_trtctx.records.report import INTERRUPTED, SCHEMA_VERSION, STOPPED_EARLY, load
from pytest_trtctx.storage import locked

from .conftest import cpu_orders, run_pytest

REPORT = {"tool": "pytest-trtctx", "schema": SCHEMA_VERSION, "environment": {}, "tests": []}

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
        ("--trtctx-report=", "option --trtctx-report: empty value; expected a path"),
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
    assert result.ret == EXIT_UNSAVED  # not where asked: CI must not take it for a clean run
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


# --- what a run writes never replaces anything but a regular file --------------------------------


def _fifo_reader(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:  # blocks until the writer opens it
            got.append(fh.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread, got


def test_a_symlinked_report_is_written_through_and_the_link_kept(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(RECORDS)
    (pytester.path / "runs").mkdir()
    link = pytester.path / "latest.json"
    link.symlink_to(pytester.path / "runs" / "r1.json")
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-report=latest.json"
    )
    assert result.ret == 0
    assert link.is_symlink()
    assert load(pytester.path / "runs" / "r1.json")["tests"][0]["outcome"] == "passed"


def test_a_report_to_a_descriptor_goes_to_the_run_s_own_output(pytester: pytest.Pytester) -> None:
    """``--trtctx-report=/dev/stdout`` writes through the process's descriptor, at its position
    (a shell's ``> log`` keeps what came before and after). ``/proc/self/fd/1`` stands for it
    here: a rename onto it fails, so a regression cannot replace anything on the machine."""
    pytester.makepyfile(RECORDS)
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first",
        "--trtctx-report=/proc/self/fd/1",
    )  # fmt: skip
    assert result.ret == 0, result.stdout.str()
    text = result.stdout.str()
    report = json.loads(text[text.index("{\n") : text.index("\n}\n") + 2])
    assert report["tests"][0]["outcome"] == "passed"
    assert text.index("trtctx: report written to /proc/self/fd/1") > text.index("\n}\n")


def test_a_fifo_as_report_is_written_into_not_replaced(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(RECORDS)
    fifo = pytester.path / "report.fifo"
    os.mkfifo(fifo)
    thread, got = _fifo_reader(fifo)
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-report=report.fifo"
    )
    thread.join(timeout=60)
    assert result.ret == 0, result.stdout.str()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(got[0])["tests"][0]["outcome"] == "passed"


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_a_device_as_report_baseline_or_merge_output_stays_a_device(
    pytester: pytest.Pytester,
) -> None:
    """As root, ``--trtctx-report=/dev/null`` replaced the device with a regular file. A node
    with /dev/null's numbers made in the test's folder stands for it: the real one is never
    touched."""
    null = pytester.path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    pytester.makepyfile(RECORDS)
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", f"--trtctx-report={null}"
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"trtctx: report written to {null}"])
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    good = pytester.path / "good.json"
    good.write_text(json.dumps(REPORT))
    done = _cli("merge", str(good), "-o", str(null))
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.lstat(null).st_mode)


def test_merge_into_a_symlink_or_a_fifo_nobody_reads(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(REPORT))
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "target.json")
    assert _cli("merge", str(good), "-o", str(link)).returncode == 0
    assert link.is_symlink() and load(tmp_path / "target.json")["tests"] == REPORT["tests"]
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    done = _cli("merge", str(good), "-o", str(fifo))
    assert done.returncode == 2
    assert f"-o {fifo}: {fifo}: a FIFO nobody reads" in done.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# --- a run cut short says so, and diff and merge do not take it for a clean one -------------------

CUT_SHORT = """
import os, signal, time

def test_1(trtctx_order): pass
def test_2(trtctx_order):
    if os.environ.get("CUT") == "^C":
        raise KeyboardInterrupt
    if os.environ.get("CUT"):  # SIGTERM to the pytest process, as a cancelled CI job sends
        for _ in range(30):  # again until it acts: the run kills this worker when it does
            os.kill(int(open("pytest.pid").read()), signal.SIGTERM)
            time.sleep(2)
def test_3(trtctx_order): pass
def test_4(trtctx_order): pass
"""
PID_CONFTEST = """
import os
def pytest_configure(config):
    open("pytest.pid", "w").write(str(os.getpid()))
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``pytest-trtctx`` command, in a process of its own with a strict UTF-8 stdout."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_trtctx.records.cli", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("cut", "detail"),
    [("SIGTERM", "pytest-trtctx: SIGTERM received"), ("^C", "KeyboardInterrupt: in test_cut.py")],
)
def test_a_run_cut_short_is_marked_and_never_diffs_or_merges_as_clean(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, cut: str, detail: str
) -> None:
    pytester.makepyfile(test_cut=CUT_SHORT)
    pytester.makeconftest(PID_CONFTEST)
    args = (*cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-workers=1")
    assert run_pytest(pytester, *args, "--trtctx-report=full.json").ret == 0
    monkeypatch.setenv("CUT", cut)
    ended = run_pytest(pytester, *args, "--trtctx-report=partial.json")
    assert ended.ret == pytest.ExitCode.INTERRUPTED
    partial = load(pytester.path / "partial.json")
    assert partial["run"]["complete"] is False
    assert partial["run"]["ended_by"] == INTERRUPTED
    assert partial["run"]["detail"].startswith(detail)
    assert partial["run"]["exit_status"] == 2
    unrun = [t["nodeid"] for t in partial["tests"] if t["outcome"] is None]
    assert partial["run"]["not_run"] == len(unrun) >= 2
    assert load(pytester.path / "full.json")["run"]["complete"] is True

    full, part = str(pytester.path / "full.json"), str(pytester.path / "partial.json")
    diff = _cli("diff", full, part)
    assert diff.returncode == EXIT_INCOMPLETE, diff.stdout + diff.stderr
    assert "pytest-trtctx diff: INCOMPLETE" in diff.stdout
    assert f"incomplete run: {part}: interrupted ({detail}" in diff.stdout
    assert f"Not run (the run ended before them: compared with nothing) ({len(unrun)})" in (
        diff.stdout
    )
    assert all(f"{n} (never ran in {part})" in diff.stdout for n in unrun)
    assert _cli("diff", full, part, "--allow-incomplete").returncode == 0

    merged = str(pytester.path / "merged.json")
    refused = _cli("merge", full, part, "-o", merged)
    assert refused.returncode == EXIT_INCOMPLETE
    assert f"{part}: an incomplete run (interrupted" in refused.stderr
    assert not Path(merged).exists()
    assert _cli("merge", part, "-o", merged, "--allow-incomplete").returncode == 0
    assert load(Path(merged))["run"]["complete"] is False
    # A test of the cut run that ran in another report is taken from there.
    assert _cli("merge", part, full, "-o", merged, "--allow-incomplete").returncode == 0
    assert all(t["outcome"] == "passed" for t in load(Path(merged))["tests"])


def test_a_report_without_a_run_record_is_read_from_its_tests(tmp_path: Path) -> None:
    """Schema 1 reports have no ``run``: complete exactly when every test has an outcome."""
    old = {**REPORT, "schema": 1}
    cut = {**old, "tests": [{"nodeid": "t::a", "outcome": None}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "cut.json").write_text(json.dumps(cut))
    assert _cli("diff", str(tmp_path / "old.json"), str(tmp_path / "old.json")).returncode == 0
    done = _cli("diff", str(tmp_path / "old.json"), str(tmp_path / "cut.json"))
    assert done.returncode == EXIT_INCOMPLETE
    assert "t::a (never ran in" in done.stdout


# --- a full disk: each output fails on its own, the summary prints, the status says so ----------

MANY = "import torch\n" + "".join(
    f"\ndef test_{i}(trtctx_order, trtctx_outputs):\n"
    f"    trtctx_outputs.add('y', torch.arange({i}.0))\n"
    for i in range(30)
)


def test_a_full_disk_loses_no_summary_and_exits_with_the_unsaved_status(
    pytester: pytest.Pytester,
) -> None:
    """``ulimit -f``: writing any file past 2 KiB fails with EFBIG (SIGXFSZ ignored, as a shell
    leaves it). Every test passed; the report and the baseline each say they were not saved,
    no empty fallback file is left, the summary prints, and the status is EXIT_UNSAVED."""
    pytester.makepyfile(MANY)
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    limit = (
        "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))"
    )
    done = subprocess.run(
        [sys.executable, "-c", f"{limit}; import pytest, sys; sys.exit(pytest.main(sys.argv[1:]))",
         "-p", "pytest_trtctx.plugin", *cpu_orders(pytester), "--trtctx-order=trt-first",
         "--trtctx-report=r.json", "--trtctx-baseline=bl", "-p", "no:cacheprovider"],
        cwd=pytester.path, capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == EXIT_UNSAVED, out + done.stderr
    assert "Traceback" not in out + done.stderr
    assert "INTERNALERROR" not in out
    assert "= trtctx summary =" in out
    assert re.search(r"= 30 passed", out), out
    assert "trtctx: report NOT written: " in out and "r.json could not be written (File too" in out
    assert re.search(r"trtctx baseline: .*baseline.json could not be written \(File too", out)
    assert "new entries were not saved" in out
    assert list(tmp.iterdir()) == [], "an empty fallback file would pass for a result"


def test_a_baseline_that_cannot_be_written_does_not_cost_the_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import shutil, torch

        def test_out(trtctx_order, trtctx_outputs):
            trtctx_outputs.add("y", torch.arange(4.0))
            shutil.rmtree("bl")
            open("bl", "w").close()  # the baseline folder is a file by the end of the run
        """
    )
    (pytester.path / "bl").mkdir()
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first",
        "--trtctx-report=r.json", "--trtctx-baseline=bl",
    )  # fmt: skip
    assert result.ret == EXIT_UNSAVED
    result.stdout.fnmatch_lines(["trtctx baseline: *could not be written*saved to *"])
    assert load(pytester.path / "r.json")["tests"][0]["outcome"] == "passed"
    result.stdout.fnmatch_lines(["*= trtctx summary =*", "*1 passed*"])


# --- runs that share a baseline folder ---------------------------------------------------------

SHARED = """
import torch
{tests}
"""


def _shared_suite(pytester: pytest.Pytester, folder: str, count: int) -> None:
    tests = "".join(
        f"\ndef test_{folder}_{i}(trtctx_order, trtctx_outputs):\n"
        f"    trtctx_outputs.add('y', torch.full((2,), {i}.0))\n"
        f"    open('done-{folder}-{i}', 'w').close()\n"
        for i in range(count)
    )
    (pytester.path / folder).mkdir()
    (pytester.path / folder / f"test_{folder}.py").write_text(SHARED.format(tests=tests))


def _pytest_proc(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "pytest_trtctx.plugin", "-p", "no:cacheprovider",
         *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-baseline=bl", *args],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_runs_sharing_a_baseline_folder_keep_every_entry(pytester: pytest.Pytester) -> None:
    """docs/gpu-ci.md runs one job per order on one baseline folder: two runs of 50 tests each,
    at once, both print +50 and the file holds 100."""
    _shared_suite(pytester, "a", 50)
    _shared_suite(pytester, "b", 50)
    procs = [_pytest_proc(pytester, folder) for folder in ("a", "b")]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out
        assert "(+50 new entries)" in out, out
    (baseline,) = (pytester.path / "bl").glob("*/baseline.json")
    assert len(json.loads(baseline.read_text())["tests"]) == 100


def test_a_baseline_is_recorded_under_its_lock(pytester: pytest.Pytester) -> None:
    """Deterministic form of the race: while another holder has the lock, a run that finished
    its tests waits, then merges what the other wrote meanwhile instead of overwriting it."""
    _shared_suite(pytester, "a", 2)
    assert _pytest_proc(pytester, "a").communicate(timeout=240)[0]  # makes bl/<fingerprint>/
    (baseline,) = (pytester.path / "bl").glob("*/baseline.json")
    _shared_suite(pytester, "b", 3)
    with locked(baseline.with_name(LOCK_NAME)):
        proc = _pytest_proc(pytester, "b")
        done = [pytester.path / f"done-b-{i}" for i in range(3)]
        for _ in range(1200):  # the run's tests pass; only the record waits
            if proc.poll() is not None or all(p.exists() for p in done):
                break
            time.sleep(0.1)
        time.sleep(2.0)
        assert proc.poll() is None, "the run recorded without waiting for the lock"
        data = json.loads(baseline.read_text())
        data["tests"]["other::run"] = {"y": "0" * 64}  # what another run recorded meanwhile
        baseline.write_text(json.dumps(data))
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 0, out
    assert "(+3 new entries)" in out
    assert set(json.loads(baseline.read_text())["tests"]) >= {"other::run"}
    assert len(json.loads(baseline.read_text())["tests"]) == 2 + 3 + 1


# --- bad input to diff and merge ------------------------------------------------------------------


def test_diff_prints_a_lone_surrogate_escaped(tmp_path: Path) -> None:
    """A skip reason or a node id may hold any text pytest was given; a strict UTF-8 stdout made
    ``diff`` crash with UnicodeEncodeError (exit 1, read as "regressed")."""
    odd = "t.py::test[\udcff]"
    old = {**REPORT, "tests": [{"nodeid": "t.py::a", "outcome": "passed"}]}
    new = {**REPORT, "tests": [*old["tests"], {"nodeid": odd, "outcome": "passed"}]}
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))  # json escapes it: \udcff
    done = _cli("diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "t.py::test[\\udcff]" in done.stdout


@pytest.mark.parametrize(
    "orders", [None, [["torch-first"]], ["torch-first", 1], "torch-first", {"a": 1}]
)
def test_merge_refuses_bad_settings_orders_naming_file_and_field(
    tmp_path: Path, orders: object
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(REPORT))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**REPORT, "settings": {"orders": orders}}))
    done = _cli("merge", str(good), str(bad), "-o", str(tmp_path / "m.json"))
    assert done.returncode == 2, done.stdout
    assert "Traceback" not in done.stderr
    assert f"pytest-trtctx merge: {bad}: field 'settings.orders' must be a list of order names" in (
        done.stderr
    )
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("isolate", ["test"], "a str"),
        ("isolate", None, "a str"),
        ("fast_contexts", None, "a bool"),
        ("fast_contexts", "yes", "a bool"),
        ("fast_contexts", 1, "a bool"),
        ("backend", 3, "a str"),
        ("backends", "cuda", "a list of backend names"),
        ("backends", ["cuda", None], "a list of backend names"),
    ],
)
@pytest.mark.parametrize("command", ["merge", "diff"])
def test_bad_settings_are_refused_naming_file_and_field(
    tmp_path: Path, command: str, field: str, value: object, kind: str
) -> None:
    """A run setting that diff compares or merge combines, of the wrong type (a hand-edited
    report): exit 2 naming the file and the field, never a traceback or a claim about it."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps({**REPORT, "settings": {"isolate": "test", "fast_contexts": False}}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**REPORT, "settings": {field: value}}))
    out = ["-o", str(tmp_path / "m.json")] if command == "merge" else []
    done = _cli(command, str(good), str(bad), *out)
    assert done.returncode == 2, done.stdout
    assert "Traceback" not in done.stderr
    assert f"pytest-trtctx {command}: {bad}: field 'settings.{field}' must be {kind}" in (
        done.stderr
    )
    assert not (tmp_path / "m.json").exists()


# --- special files as inputs -------------------------------------------------------------------


def test_a_fifo_or_a_device_as_a_report_to_diff_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "r.fifo"
    os.mkfifo(fifo)  # nobody writes: a blocking read would never return
    good = tmp_path / "good.json"
    good.write_text(json.dumps(REPORT))
    done = _cli("diff", str(good), str(fifo))
    assert done.returncode == 2
    assert f"{fifo} is a FIFO, not a regular file; not a report" in done.stderr
    done = _cli("diff", "/dev/zero", str(good))
    assert done.returncode == 2
    assert "/dev/zero is a character device, not a regular file; not a report" in done.stderr


def test_a_fifo_as_the_matrix_is_a_collection_error_not_a_hang(pytester: pytest.Pytester) -> None:
    os.mkfifo(pytester.path / "m.toml")
    pytester.makepyfile("def test_x(trtctx_spec): pass")
    result = run_pytest(pytester, "--trtctx-matrix=m.toml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*m.toml: cannot read the matrix file: *m.toml is a FIFO*"])


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_a_device_as_a_baseline_stops_the_run_at_once(
    pytester: pytest.Pytester, kind: str
) -> None:
    folder = pytester.path / "bl" / "0123456789abcdef"
    folder.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(folder / "baseline.json")
        what = "a FIFO"
    else:
        (folder / "baseline.json").symlink_to("/dev/zero")
        what = "a character device"
    pytester.makepyfile(RECORDS)
    result = run_pytest(pytester, "--trtctx-baseline=bl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: --trtctx-baseline: */baseline.json is {what}, not a regular file; *"]
    )
    assert not (pytester.path / "ran").exists()


def test_a_fifo_named_like_an_engine_entry_is_rebuilt_not_read(tmp_path: Path) -> None:
    """The engine cache reads an entry only if it is a regular file: a FIFO under an entry's
    name is reported and the engine rebuilt (in a child: a blocking read would hang it)."""
    code = (
        "import os, sys, warnings\n"
        "from pathlib import Path\n"
        "from pytest_trtctx.engines import cache as ec\n"
        "root = Path(sys.argv[1])\n"
        "key = {'k': 1}\n"
        "path = ec.entry_path(root, ec.cache_key(key))\n"
        "path.parent.mkdir(parents=True)\n"
        "os.mkfifo(path)\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    plan, hit = ec.get_or_build(key, lambda: b'plan', root)\n"
        "print(plan, hit)\n"
        "print('|'.join(str(w.message) for w in seen))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, warned = done.stdout.splitlines()
    assert first == "b'plan' False"
    assert "is unusable (" in warned and "is a FIFO, not a regular file" in warned


def test_new_engine_cache_folders_are_private(tmp_path: Path) -> None:
    """docs/reliability.md ("Trust"): new cache folders are the user's alone, locks 0600."""
    from pytest_trtctx.engines import cache as ec

    root = tmp_path / "a" / "cache"
    key = {"k": 2}
    plan, hit = ec.get_or_build(key, lambda: b"plan", root)
    assert (plan, hit) == (b"plan", False)
    for folder in (tmp_path / "a", root, root / "engines"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    entry = ec.entry_path(root, ec.cache_key(key))
    assert entry.stat().st_mode & 0o777 == 0o600
    assert entry.with_suffix(".lock").stat().st_mode & 0o777 == 0o600


# --- matrix fields that a backend takes as 32-bit ints -------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("stride", "4294967297", "field 'stride': 4294967297 is more than 2147483647"),
        ("dilation", "[1, 2147483648]", "field 'dilation': 2147483648 is more than 2147483647"),
        ("padding", "4294967296", "field 'padding': 4294967296 is more than 2147483647"),
        ("padding", "1073741824", "field 'padding': height + 2*padding would be 2147483656"),
    ],
)
def test_a_stride_padding_or_dilation_past_32_bits_is_refused_naming_it(
    pytester: pytest.Pytester, field: str, value: str, what: str
) -> None:
    text = MATRIX_ENTRY.format(batch=1, height=8).replace(f"{field} = ", f"{field} = {value} #")
    pytester.makefile(".toml", conv_matrix=text)
    pytester.makepyfile("def test_x(trtctx_spec): pass")
    result = run_pytest(pytester, "--trtctx-matrix=conv_matrix.toml")
    result.assert_outcomes(errors=1)
    assert f"[[conv]] #1 ('huge') at line 3: {what}" in result.stdout.str()


def test_a_run_stopped_by_x_is_incomplete(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_1(trtctx_order): assert False
        def test_2(trtctx_order): pass
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=trt-first", "--trtctx-workers=1",
        "--trtctx-report=r.json", "-x",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    run = load(pytester.path / "r.json")["run"]
    assert (run["complete"], run["ended_by"], run["exit_status"]) == (False, STOPPED_EARLY, 1)
    assert run["not_run"] == 1
