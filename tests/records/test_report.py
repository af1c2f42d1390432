"""The JSON report and ``pytest-trtctx diff`` (real runs through pytester; CPU tensors)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_trtctx.records.cli import main as cli_main
from pytest_trtctx.records.report import GZIP_MAGIC, SCHEMA_VERSION, ReportError, load

from ..conftest import cpu_orders, run_pytest

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


def test_a_clone_run_and_an_installed_run_compare_without_their_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """./dev matrix collects tests/regression/..., the installed suite test_conv_matrix.py...:
    by node id they share nothing; --ignore-folders compares them test by test."""
    base = {"tool": "pytest-trtctx", "schema": SCHEMA_VERSION, "environment": {}}
    test = "test_conv_matrix.py::test_conv[torch-first-k3]"
    clone = dict(base, tests=[{"nodeid": f"tests/regression/{test}", "outcome": "passed"}])
    installed = dict(base, tests=[{"nodeid": test, "outcome": "failed", "signature": "boom"}])
    (tmp_path / "clone.json").write_text(json.dumps(clone))
    (tmp_path / "installed.json").write_text(json.dumps(installed))
    args = ["diff", str(tmp_path / "clone.json"), str(tmp_path / "installed.json")]
    assert cli_main(args) == 0  # nothing in common: no regression, and it says so
    assert "compared: 0 tests in both" in capsys.readouterr().out
    assert cli_main([*args, "--ignore-folders"]) == 1
    text = capsys.readouterr().out
    assert "compared: 1 tests in both" in text and test in text and "boom" in text

    twice = dict(base, tests=[{"nodeid": f"a/{test}"}, {"nodeid": f"b/{test}"}])
    (tmp_path / "twice.json").write_text(json.dumps(twice))
    assert cli_main(["diff", str(tmp_path / "twice.json"), *args[2:], "--ignore-folders"]) == 2
    error = capsys.readouterr().err
    assert f"a/{test} and b/{test} are both {test!r} without their folders" in error


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
    from pytest_trtctx.records.cli import REASONS_SHOWN, ROWS_SHOWN, SKIPS_SHOWN

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
        ("", "an empty file; not a report"),
        (" \n", "an empty file; not a report"),
        ("{not json", "not JSON (line 1, column 2"),
        ('{"hello": 1}', "not a pytest-trtctx report (no 'tool': 'pytest-trtctx' field)"),
        ('{"tool": "pytest-trtctx", "schema": 99, "tests": []}', "report schema 99, this version"),
        ('{"tool": "pytest-trtctx", "schema": 1, "tests": [{}]}', "tests[0] is not a record with"),
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
        [sys.executable, "-m", "pytest_trtctx.records.cli", "diff", str(good), str(bad)],
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
    # The same test in two reports with the same results is one record; with others, refused.
    assert cli_main(["merge", str(paths[0]), str(paths[0]), "-o", str(out)]) == 0
    assert len(load(out)["tests"]) == 5
    changed = json.loads(paths[0].read_text())
    changed["tests"][0]["outcome"] = "failed"
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    assert cli_main(["merge", str(paths[0]), str(tmp_path / "changed.json"), "-o", str(out)]) == 2
    # Skipped because its order could not be applied here: yields to the record that ran.
    unapplied = json.loads(paths[0].read_text())
    unapplied["tests"][0].update(outcome="skipped", order_applied=False, outputs_sha256={})
    (tmp_path / "unapplied.json").write_text(json.dumps(unapplied))
    for pair in ((tmp_path / "unapplied.json", paths[0]), (paths[0], tmp_path / "unapplied.json")):
        assert cli_main(["merge", *map(str, pair), "-o", str(out)]) == 0
        kept = {t["nodeid"]: t for t in load(out)["tests"]}[changed["tests"][0]["nodeid"]]
        assert kept["outcome"] == json.loads(paths[0].read_text())["tests"][0]["outcome"]
    other = json.loads(paths[1].read_text())
    other["environment"]["driver"] = "999.99"
    (tmp_path / "other.json").write_text(json.dumps(other))
    assert cli_main(["merge", str(paths[0]), str(tmp_path / "other.json"), "-o", str(out)]) == 2


VALID = {"tool": "pytest-trtctx", "schema": SCHEMA_VERSION, "environment": {}, "tests": []}


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({**VALID, "tests": [{"nodeid": 1}]}, "tests[0] is not a record with a 'nodeid'"),
        (
            {**VALID, "tests": [{"nodeid": "t", "outputs_sha256": ["a"]}]},
            "tests[0] (t): field 'outputs_sha256' must be dict, got list",
        ),
        (
            {**VALID, "tests": [{"nodeid": "t", "outcome": 3}]},
            "tests[0] (t): field 'outcome' must be str or null, got int",
        ),
        (
            {**VALID, "tests": [{"nodeid": "t", "outputs_sha256": {"y": 1}}]},
            "tests[0] (t): hashes must be strings",
        ),
        ({**VALID, "environment": []}, "field 'environment' must be an object"),
        ({**VALID, "tests": {"t": {}}}, "field 'tests' must be a list of records"),
    ],
)
def test_diff_and_merge_refuse_unusable_input_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], report: dict[str, Any], message: str
) -> None:
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(VALID))
    bad.write_text(json.dumps(report))
    assert cli_main(["diff", str(good), str(bad)]) == 2
    assert f"{bad}: {message}" in capsys.readouterr().err
    assert cli_main(["merge", str(good), str(bad), "-o", str(tmp_path / "m.json")]) == 2
    assert f"{bad}: {message}" in capsys.readouterr().err


def test_deeply_nested_json_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert cli_main(["diff", str(deep), str(deep)]) == 2
    assert "JSON nested too deeply to be a report" in capsys.readouterr().err


def test_decompression_is_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gzip

    from pytest_trtctx.records import report

    monkeypatch.setattr(report, "MAX_REPORT_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(b" " * (4 << 20)))  # 4 KB that decompress to 4 MiB
    assert cli_main(["diff", str(bomb), str(bomb)]) == 2
    assert "decompresses to more than 1 MiB; not a report" in capsys.readouterr().err


def test_merge_into_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(VALID))
    assert cli_main(["merge", str(good), "-o", str(tmp_path)]) == 2
    assert "-o: " in capsys.readouterr().err


GPU_CI = Path(__file__).resolve().parents[2] / "docs" / "gpu-ci.md"
WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "gpu.yml"


def test_the_guide_shows_the_workflow_that_ships() -> None:
    shown = re.search(r"```yaml\n(.*?)```", GPU_CI.read_text(), re.S)
    assert shown is not None and shown.group(1) == WORKFLOW.read_text()


def test_the_gpu_ci_recipe_runs_as_written(tmp_path: Path) -> None:
    """docs/gpu-ci.md's jobs: one run of the regression suite per order with a report, the
    reports merged, the merge diffed. Its commands are taken from the guide itself; only a
    selection of one spec (-k) is added, to keep the test short. On a machine without a GPU the
    order tests skip, the plan builds (no order) run in every job: the merge must take them."""
    import re
    import subprocess
    import sys

    guide = WORKFLOW.read_text()  # docs/gpu-ci.md shows this file (test above)
    orders = re.search(r"order: \[([^\]]+)\]", guide)
    assert orders is not None
    run = re.search(
        r"- run: >\n\s+(python3 -m pytest tests/regression .*?)\n\s+- uses", guide, re.S
    )
    assert run is not None
    root = GPU_CI.parents[1]
    for order in [o.strip() for o in orders.group(1).split(",")]:
        command = " ".join(run.group(1).split())
        command = command.replace("${{ matrix.order }}", order).replace("$HOME", str(tmp_path))
        args = command.split()[3:]  # after "python3 -m pytest"
        # relative in the job: here, in tmp_path
        outputs = ("--trtctx-report=", "--trtctx-html=", "--junitxml=")
        args = [a.replace("=", f"={tmp_path}/", 1) if a.startswith(outputs) else a for a in args]
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *args, "-k", "k1s1d1g1_f32_b1_17x19", "-q",
             "-p", "no:cacheprovider"],
            cwd=root, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    merge = re.search(r"- run: (pytest-trtctx merge .*)", guide)
    assert merge is not None
    reports = sorted(str(p) for p in tmp_path.glob("report-*.json"))
    assert len(reports) == 5
    assert cli_main(["merge", *reports, "-o", str(tmp_path / "new.json")]) == 0
    merged = load(tmp_path / "new.json")
    nodeids = [t["nodeid"] for t in merged["tests"]]
    assert len(nodeids) == len(set(nodeids))
    # The JUnit XML carries each test's plan (order, backend, spec) for CI tools that read it.
    junit = (tmp_path / "junit-driver-first.xml").read_text()
    assert "name=\"trtctx_plan\" value=\"{'order': 'driver-first', 'backend': 'auto'" in junit
    assert (
        cli_main(["diff", "--markdown", str(tmp_path / "new.json"), str(tmp_path / "new.json")])
        == 0
    )
    # The pages: one per order's job, and the merged run's (of the change from main, with one).
    assert len(list(tmp_path.glob("page-*.html"))) == 5
    page = re.search(r"pytest-trtctx html new.json -o (\S+)", guide)
    assert page is not None
    assert cli_main(["html", str(tmp_path / "new.json"), "-o", str(tmp_path / page[1])]) == 0
    new = str(tmp_path / "new.json")
    assert cli_main(["html", "--diff", new, new, "-o", str(tmp_path / page[1])]) == 0


def test_a_report_with_no_order_selected_records_none(pytester: pytest.Pytester) -> None:
    """No --trtctx-order: nothing ran an order's recipe, so the report names no order (a test
    that asks for one is skipped as [no-order]), and pytest's help says the same default."""
    pytester.makepyfile(test_suite=SUITE)
    result = run_pytest(pytester, "--trtctx-report=r.json")
    result.assert_outcomes(skipped=5)
    data = load(pytester.path / "r.json")
    assert data["settings"]["orders"] == []
    assert {t["order"] for t in data["tests"]} == {None}
    assert {t["nodeid"].rpartition("[")[2] for t in data["tests"]} == {"no-order]"}


def test_a_run_that_lists_another_backend_first_is_not_compared_nor_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first backend listed keeps its test ids (--trtctx-backend=a,b): two runs that list
    another one first run other engines under one id. diff says so and does not call it "no
    regression"; merge refuses; runs that list the same one first merge, with every backend."""
    base = {"tool": "pytest-trtctx", "schema": SCHEMA_VERSION, "environment": {}}
    test = [{"nodeid": "t[driver-first-k3]", "outcome": "passed"}]
    runs = {
        "cuda": dict(base, settings={"orders": [], "backend": "cuda"}, tests=test),
        "triton": dict(base, settings={"orders": [], "backend": "triton"}, tests=test),
        "cuda-cudnn": dict(
            base, settings={"orders": [], "backend": "cuda", "backends": ["cuda", "cudnn"]},
            tests=[*test, {"nodeid": "t[driver-first-cudnn-plan0-k3]", "outcome": "passed"}],
        ),
    }  # fmt: skip
    for name, data in runs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
    path = {name: str(tmp_path / f"{name}.json") for name in runs}
    assert cli_main(["diff", path["triton"], path["cuda-cudnn"]]) == 1
    text = capsys.readouterr().out
    assert "REGRESSED" in text and "Another first backend" in text and "triton -> cuda" in text
    assert cli_main(["diff", path["cuda"], path["cuda-cudnn"]]) == 0
    assert "Another first backend" not in capsys.readouterr().out
    out = tmp_path / "merged.json"
    assert cli_main(["merge", path["cuda"], path["triton"], "-o", str(out)]) == 2
    error = capsys.readouterr().err
    assert "its run lists backend 'triton' first" in error and not out.exists()
    assert cli_main(["merge", path["cuda"], path["cuda-cudnn"], "-o", str(out)]) == 0
    assert load(out)["settings"]["backends"] == ["cuda", "cudnn"]


def test_a_diff_names_the_run_settings_that_changed(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    """--trtctx-fast-contexts is kept in the report; diff says when it (or the isolation mode)
    changed between the runs, beside the outcomes and not as a regression; a report written
    before the key ran without it; a merge of runs with and without it says it was on."""
    pytester.makepyfile(test_suite=SUITE)
    run_pytest(pytester, "--trtctx-report=off.json").assert_outcomes(skipped=5)
    run_pytest(pytester, "--trtctx-report=on.json", "--trtctx-fast-contexts").assert_outcomes(
        skipped=5
    )
    off, on = (str(pytester.path / f"{name}.json") for name in ("off", "on"))
    assert load(Path(off))["settings"]["fast_contexts"] is False
    assert load(Path(on))["settings"]["fast_contexts"] is True
    assert cli_main(["diff", off, on, "--markdown"]) == 0
    text = capsys.readouterr().out
    assert "no regression" in text
    assert "### Settings changes (what the runs were asked to do differently) (1)" in text
    assert "- `fast_contexts`: False -> True" in text
    older = json.loads(Path(off).read_text())
    del older["settings"]["fast_contexts"]
    older["settings"]["isolate"] = "order"
    (pytester.path / "older.json").write_text(json.dumps(older))
    assert cli_main(["diff", str(pytester.path / "older.json"), off]) == 0
    text = capsys.readouterr().out
    assert text.endswith(
        "Settings changes (what the runs were asked to do differently) (1)\n"
        "  isolate: 'order' -> 'none'\n"
    )
    merged = pytester.path / "merged.json"
    assert cli_main(["merge", off, on, "-o", str(merged)]) == 0
    assert load(merged)["settings"]["fast_contexts"] is True
    assert load(merged)["settings"]["isolate"] == "none"
    assert cli_main(["merge", off, str(pytester.path / "older.json"), "-o", str(merged)]) == 0
    assert load(merged)["settings"]["isolate"] == "mixed"
