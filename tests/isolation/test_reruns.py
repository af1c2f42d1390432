"""pytest-rerunfailures under isolation: every rerun happens, each in a fresh worker that meets
the test's order fresh, and the summary counts them as plain pytest does."""

from __future__ import annotations

import json

import pytest

from ..conftest import cpu_orders, run_pytest

pytest.importorskip("pytest_rerunfailures", reason="pytest-rerunfailures is in the [test] extra")

#: Fails on its first attempt only (a file in the run's folder remembers it); each attempt
#: records its process and whether it met its order fresh.
FLAKY = """
import json, os, pytest

def _attempt(name):
    with open("attempts.jsonl", "a") as fh:
        fh.write(json.dumps({"test": name, "pid": os.getpid()}) + "\\n")

def test_ok():
    pass

def test_always_fails():
    _attempt("always")
    assert 0, "always"

def test_flaky():
    _attempt("flaky")
    if not os.path.exists("failed-once"):
        open("failed-once", "w").close()
        assert 0, "first attempt"

@pytest.mark.xfail(reason="expected")
def test_xfail():
    assert 0

@pytest.mark.flaky(reruns=3)
def test_marked():
    _attempt("marked")
    assert 0, "marked"
"""

MODES = {
    "test": ("--trtctx-isolate=test",),
    "order": ("--trtctx-isolate=order",),
    "xdist": ("-p", "xdist", "-n", "2", "--trtctx-isolate=test"),
}


def _attempts(pytester: pytest.Pytester) -> list[dict[str, object]]:
    lines = (pytester.path / "attempts.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _plain(pytester: pytest.Pytester) -> dict[str, int]:
    """What pytest with pytest-rerunfailures and no order says of the same tests."""
    result = run_pytest(pytester, "-p", "pytest_rerunfailures", "--reruns", "1")
    for name in ("attempts.jsonl", "failed-once"):
        (pytester.path / name).unlink()
    return result.parseoutcomes()


def _under_an_order(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """The same tests with pytest-rerunfailures (``--reruns 1``) under torch-first (CPU orders)."""
    return run_pytest(
        pytester,
        *cpu_orders(pytester),
        "-p",
        "pytest_rerunfailures",
        "--reruns",
        "1",
        "--trtctx-order=torch-first",
        *args,
    )


@pytest.mark.parametrize("mode", sorted(MODES))
def test_reruns_happen_each_in_a_fresh_worker(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makepyfile(test_eco=FLAKY)
    plain = _plain(pytester)
    assert plain == {"failed": 2, "passed": 2, "xfailed": 1, "rerun": 5}, plain
    result = _under_an_order(pytester, *MODES[mode])
    outcomes = result.parseoutcomes()
    outcomes.pop("warnings", None)  # -p xdist: pytest cannot rewrite it, already imported
    assert outcomes == plain, result.stdout.str()[-3000:]
    attempts = _attempts(pytester)
    by_test: dict[object, list[object]] = {}
    for a in attempts:
        by_test.setdefault(a["test"], []).append(a["pid"])
    # 1 + --reruns 1; the flaky marker's own count wins: 1 + 3
    assert {k: len(v) for k, v in by_test.items()} == {"always": 2, "flaky": 2, "marked": 4}
    firsts = {pids[0] for pids in by_test.values()}  # one worker for all under isolate=order
    again = [pid for pids in by_test.values() for pid in pids[1:]]
    assert len(set(again)) == len(again) and not firsts & set(again), by_test


def test_a_rerun_meets_its_order_fresh_and_the_report_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_eco=FLAKY)
    result = _under_an_order(
        pytester, "--trtctx-isolate=order", "--trtctx-report=r.json", "-k", "test_flaky"
    )
    result.assert_outcomes(passed=1)
    assert result.parseoutcomes()["rerun"] == 1
    report = json.loads((pytester.path / "r.json").read_text())
    (record,) = [t for t in report["tests"] if t["nodeid"].endswith("test_flaky")]
    assert record["outcome"] == "passed"
    assert record["fresh"] is True and record["order_applied"] is True
    assert record["reruns"] == 1
    assert record["signature"] is None  # the passing attempt's, not the failed one's
