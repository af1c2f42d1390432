"""Baselines per environment fingerprint (real runs through pytester; CPU tensors)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pytest_trtctx.records.baseline import fingerprint

from ..conftest import cpu_orders, run_pytest

pytest.importorskip("torch", reason="torch is not installed: outputs are torch tensors")

SUITE = """
import os, torch

def test_out(trtctx_order, trtctx_outputs):
    y = torch.linspace(0, 1, 10)
    y[7] += float(os.environ.get("NUDGE", "0"))
    trtctx_outputs.add("y", y)
"""


def _run(pytester: pytest.Pytester, nudge: str = "0", *extra: str) -> pytest.RunResult:
    pytester._monkeypatch.setenv("NUDGE", nudge)
    return run_pytest(
        pytester,
        *cpu_orders(pytester),
        "--trtctx-order=torch-first",
        "--trtctx-baseline=bl",
        "-p",
        "no:cacheprovider",
        *extra,
    )


def test_same_environment_drift_fails_with_the_largest_difference(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    first = _run(pytester, "0", "--trtctx-baseline-keep")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["trtctx baseline: *bl/* (+1 new entries)"])
    [folder] = list((pytester.path / "bl").iterdir())
    entry = json.loads((folder / "baseline.json").read_text())
    assert list(entry["tests"]) == ["test_suite.py::test_out[torch-first]"]
    assert fingerprint(entry["environment"]) == folder.name
    _run(pytester, "0").assert_outcomes(passed=1)  # same outputs: still fine
    drifted = _run(pytester, "0.25")
    drifted.assert_outcomes(failed=1)
    drifted.stdout.fnmatch_lines(
        [
            "*trtctx baseline: outputs drifted in the same environment*",
            "*y: differs from the baseline recorded in this environment: sha256 * -> *; "
            "largest |diff| 0.25 at flat index 7 (0.777778 -> 1.02778)*",
        ],
        consecutive=False,
    )
    # A drifted run never overwrites the baseline.
    again = json.loads((folder / "baseline.json").read_text())
    assert again["tests"] == entry["tests"]


def test_another_environments_baseline_is_reported_not_failed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    _run(pytester, "0").assert_outcomes(passed=1)
    [folder] = list((pytester.path / "bl").iterdir())
    # The same baseline, as an earlier environment (before an upgrade) would have left it.
    shutil.move(folder, folder.with_name("0123456789abcdef"))
    result = _run(pytester, "0.5")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "trtctx baseline: 1 output(s) differ from another environment's baseline:",
            "*test_out[[]torch-first[]]: y: differs from the baseline recorded in another "
            "environment*outputs were not kept*",
        ]
    )


def test_a_baseline_is_read_once_per_run(tmp_path: Path) -> None:
    """Every test's comparison reads what the run's start read: re-reading and re-parsing the
    files for each test made ``--trtctx-baseline`` quadratic in the tests (the figure:
    benchmarks/bench_baseline.py). The files are replaced by garbage after the start: a second
    read would fail."""
    from pytest_trtctx.records.baseline import Baseline

    for fp, nodeid in (("a" * 16, "t::mine"), ("b" * 16, "t::other")):
        (tmp_path / fp).mkdir()
        data = {"environment": {}, "tests": {nodeid: {"y": fp}}}
        (tmp_path / fp / "baseline.json").write_text(json.dumps(data))
    baseline = Baseline(tmp_path, "a" * 16, keep_outputs=False)
    baseline.check()
    for path in tmp_path.glob("*/baseline.json"):
        path.write_text("not json")
    assert baseline.reference("t::mine") == ("a" * 16, {"y": "a" * 16})
    assert baseline.reference("t::other") == ("b" * 16, {"y": "b" * 16})
    assert baseline.reference("t::none") is None
