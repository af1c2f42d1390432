"""The JSON report and ``pytest-trtctx diff`` (real runs through pytester; CPU tensors)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_trtctx.cli import main as cli_main
from pytest_trtctx.report import GZIP_MAGIC, SCHEMA_VERSION, ReportError, load

from .conftest import cpu_orders, run_pytest

pytest.importorskip("torch", reason="torch is not installed: outputs are torch tensors")

SUITE = """
import os, pytest, torch

SCALE = float(os.environ.get("SCALE", "1"))

def test_output(trtctx_order, trtctx_outputs):
    trtctx_outputs.add("y", torch.arange(4.0) * SCALE)

@pytest.mark.trtctx_known_failure("trt-first", "RuntimeError: boom", reason="demo")
def test_known(trtctx_order):
    if trtctx_order == "trt-first" and os.environ.get("FIXED") != "1":
        raise RuntimeError("boom")

def test_flaky(trtctx_order):
    assert os.environ.get("BREAK") != "1", "broken by the upgrade"

def test_skipped(trtctx_order):
    pytest.skip("not here")

def test_gone(trtctx_order):
    if os.environ.get("GONE") == "1":
        pytest.skip("backend gone")
"""


def _run(pytester: pytest.Pytester, name: str, **env: str) -> Path:
    for key in ("SCALE", "FIXED", "BREAK", "GONE"):
        pytester._monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        pytester._monkeypatch.setenv(key, value)
    path = pytester.path / name
    run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first,trt-first",
        f"--trtctx-report={name}",
    )
    return path


def test_report_records_every_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    data = load(_run(pytester, "r.json"))
    assert data["schema"] == SCHEMA_VERSION
    env = data["environment"]
    assert {"gpus", "driver", "versions", "os", "python"} <= set(env)
    assert env["versions"]["python"] == env["python"]
    tests = {t["nodeid"]: t for t in data["tests"]}
    assert len(tests) == 10
    out = tests["test_suite.py::test_output[torch-first]"]
    assert out["order"] == "torch-first" and out["outcome"] == "passed"
    assert len(out["outputs_sha256"]["y"]) == 64
    assert set(out["durations"]) == {"setup", "call", "teardown"}
    known = tests["test_suite.py::test_known[trt-first]"]
    assert known["outcome"] == "known-failure"
    assert known["signature"] == "RuntimeError: boom"
    assert known["known_failure"] == {
        "order": "trt-first",
        "signature": "RuntimeError: boom",
        "status": "reproduced",
    }
    assert tests["test_suite.py::test_skipped[trt-first]"]["outcome"] == "skipped"
    assert tests["test_suite.py::test_skipped[trt-first]"]["messages"] == ["Skipped: not here"]


def test_diff_reports_what_an_upgrade_changed(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    old = _run(pytester, "old.json")
    new = _run(pytester, "new.json", SCALE="2", FIXED="1", BREAK="1", GONE="1")
    assert cli_main(["diff", str(old), str(old)]) == 0
    same = capsys.readouterr().out
    assert (
        "compared: 10 tests in both (10 with the same outcome), 2 output hashes (2 bitwise " in same
    )
    assert cli_main(["diff", str(old), str(new)]) == 1
    text = capsys.readouterr().out
    assert text.startswith("pytest-trtctx diff: REGRESSED")
    assert (
        "compared: 10 tests in both (5 with the same outcome), 2 output hashes (0 bitwise" in text
    )
    assert "Newly skipped (ran before: coverage lost) (2)" in text
    assert (
        "  2 skipped because: backend gone\n    test_suite.py::test_gone[torch-first] (was" in text
    )
    assert "Newly failing (2)" in text
    assert "test_suite.py::test_flaky[torch-first] (was passed): AssertionError: broken" in text
    assert "Known failures that stopped reproducing (1)" in text
    assert "test_suite.py::test_known[trt-first] under trt-first" in text
    assert (
        "Outputs whose SHA-256 changed in the same environment (not bitwise reproducible) (2)"
        in text
    )
    assert cli_main(["diff", "--markdown", str(old), str(new)]) == 1
    md = capsys.readouterr().out
    assert md.startswith("## pytest-trtctx diff: REGRESSED")
    assert "### Newly failing (2)" in md
    assert "- `test_suite.py::test_known[[]trt-first]`" not in md  # no glob escapes leak
    assert "- `test_suite.py::test_known[trt-first]` under trt-first" in md


def test_diff_newly_passing_and_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    base = {"tool": "pytest-trtctx", "schema": SCHEMA_VERSION}
    old = dict(base, environment={"driver": "580.1"}, tests=[{"nodeid": "t", "outcome": "failed"}])
    new = dict(base, environment={"driver": "590.2"}, tests=[{"nodeid": "t", "outcome": "passed"}])
    (tmp_path / "o.json").write_text(json.dumps(old))
    (tmp_path / "n.json").write_text(json.dumps(new))
    assert cli_main(["diff", str(tmp_path / "o.json"), str(tmp_path / "n.json")]) == 0
    text = capsys.readouterr().out
    assert "Newly passing (1)" in text and "  t (passed)" in text
    assert "driver: '580.1' -> '590.2'" in text


def test_diff_hash_changes_with_the_environment_count_only_when_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {"tool": "pytest-trtctx", "schema": SCHEMA_VERSION}
    test = {"nodeid": "t", "outcome": "passed"}
    old = dict(base, environment={"driver": "580.1"}, tests=[dict(test, outputs_sha256={"y": "a"})])
    new = dict(base, environment={"driver": "590.2"}, tests=[dict(test, outputs_sha256={"y": "b"})])
    (tmp_path / "o.json").write_text(json.dumps(old))
    (tmp_path / "n.json").write_text(json.dumps(new))
    paths = [str(tmp_path / "o.json"), str(tmp_path / "n.json")]
    assert cli_main(["diff", *paths]) == 0
    text = capsys.readouterr().out
    assert text.startswith("pytest-trtctx diff: no regression")
    assert (
        "Outputs whose SHA-256 changed with driver (a regression with --strict-hashes) (1)" in text
    )
    assert "  t y: a -> b" in text
    assert cli_main(["diff", "--strict-hashes", *paths]) == 1
    text = capsys.readouterr().out
    assert text.startswith("pytest-trtctx diff: REGRESSED")
    assert "changed with driver (--strict-hashes: a regression) (1)" in text
    # A new OS string, Python or a second GPU computes nothing differently: still a regression.
    for env in (
        {"driver": "580.1", "os": "Linux-6.19"},
        {"driver": "580.1", "versions": {"python": "3.12.4"}},
        {"driver": "580.1", "gpus": [{}, {"name": "H100"}]},
    ):
        (tmp_path / "n.json").write_text(json.dumps(dict(new, environment=env)))
        assert cli_main(["diff", *paths]) == 1, env
        text = capsys.readouterr().out
        assert "changed in the same environment (not bitwise reproducible) (1)" in text


def test_diff_groups_skips_by_reason_and_keeps_sections_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_trtctx.cli import REASONS_SHOWN, ROWS_SHOWN, SKIPS_SHOWN

    base = {"tool": "pytest-trtctx", "schema": SCHEMA_VERSION, "environment": {}}
    # Reason r skips n_r tests: reason 0 the most; more reasons than are shown, and more grouped
    # lines than ROWS_SHOWN, which must not cut the section.
    sizes = [SKIPS_SHOWN + 2] + [2] * (REASONS_SHOWN + 1)
    old_tests, new_tests = [], []
    for r, size in enumerate(sizes):
        for i in range(size):
            nodeid = f"r{r:02d}t{i:02d}"
            old_tests.append({"nodeid": nodeid, "outcome": "passed"})
            new_tests.append(
                {"nodeid": nodeid, "outcome": "skipped", "messages": [f"Skipped: why {r:02d}"]}
            )
    old_tests += [{"nodeid": "later", "outcome": "skipped"}]
    old_tests += [{"nodeid": f"old{i}", "outcome": "passed"} for i in range(ROWS_SHOWN + 3)]
    new_tests += [{"nodeid": "later", "outcome": "passed"}]
    (tmp_path / "o.json").write_text(json.dumps(dict(base, tests=old_tests)))
    (tmp_path / "n.json").write_text(json.dumps(dict(base, tests=new_tests)))
    assert cli_main(["diff", "--markdown", str(tmp_path / "o.json"), str(tmp_path / "n.json")]) == 1
    md = capsys.readouterr().out
    assert f"### Newly skipped (ran before: coverage lost) ({sum(sizes)})" in md
    assert f"- {SKIPS_SHOWN + 2} skipped because: why 00\n  - `r00t00` (was passed)" in md
    assert "  - ... and 2 more\n- 2 skipped because: why 01\n" in md
    assert f"- 2 skipped because: why {REASONS_SHOWN - 1:02d}\n" in md  # the last reason shown
    assert f"skipped because: why {REASONS_SHOWN:02d}\n" not in md
    assert "- ... and 2 more reasons (4 tests)" in md
    assert "### Newly running (skipped before) (1)\n- `later` (passed)" in md
    assert f"### Tests removed ({ROWS_SHOWN + 3})" in md
    assert "- ... and 3 more (the JSON reports list all)" in md


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not JSON (line 1, column 2"),
        ('{"hello": 1}', "not a pytest-trtctx report (no 'tool': 'pytest-trtctx' field)"),
        ('{"tool": "pytest-trtctx", "schema": 99, "tests": []}', "report schema 99, this version"),
        ('{"tool": "pytest-trtctx", "schema": 1, "tests": [{}]}', "field 'tests' must be a list"),
    ],
)
def test_diff_bad_input_is_exit_2_with_the_reason(
    tmp_path: Path, content: str | None, message: str
) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"tool": "pytest-trtctx", "schema": SCHEMA_VERSION, "tests": []}))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_trtctx.cli", "diff", str(good), str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"pytest-trtctx diff: {bad}: ")
    assert message in proc.stderr


def test_a_gz_report_is_compressed_and_diffs_against_a_plain_one(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    plain, packed = _run(pytester, "r.json"), _run(pytester, "r.json.gz")
    blob = packed.read_bytes()
    assert blob.startswith(GZIP_MAGIC)
    assert len(blob) * 3 < plain.stat().st_size
    assert len(load(packed)["tests"]) == len(load(plain)["tests"]) == 10
    assert cli_main(["diff", str(plain), str(packed)]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out
    assert "2 output hashes (2 bitwise identical)" in out


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (GZIP_MAGIC + b"\x08\x00 not deflate", "a damaged gzip file"),
        (b"\xff\xfe{}", "not UTF-8 text (byte 0)"),
    ],
)
def test_load_names_a_damaged_or_binary_file(tmp_path: Path, blob: bytes, message: str) -> None:
    bad = tmp_path / "bad.json.gz"
    bad.write_bytes(blob)
    with pytest.raises(ReportError, match="^" + re.escape(f"{bad}: {message}")):
        load(bad)


def test_merge_combines_one_environments_reports(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    paths = []
    for order in ("torch-first", "trt-first"):
        name = f"{order}.json"
        run_pytest(
            pytester, *cpu_orders(pytester), f"--trtctx-order={order}", f"--trtctx-report={name}"
        )
        paths.append(pytester.path / name)
    out = tmp_path / "all.json"
    assert cli_main(["merge", *map(str, paths), "-o", str(out)]) == 0
    merged = load(out)
    assert len(merged["tests"]) == 10
    assert merged["settings"]["orders"] == ["torch-first", "trt-first"]
    # The same test twice, or another environment, is refused.
    assert cli_main(["merge", str(paths[0]), str(paths[0]), "-o", str(out)]) == 2
    other = json.loads(paths[1].read_text())
    other["environment"]["driver"] = "999.99"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert cli_main(["merge", str(paths[0]), str(tmp_path / "other.json"), "-o", str(out)]) == 2
