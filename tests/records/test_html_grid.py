"""The HTML page's data: grids of the committed GPU reports, a diff's marks, escaping. What a
browser makes of it is tests/records/test_html_browser.py's."""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_trtctx.messages import CELL_STATES
from pytest_trtctx.records.cli import compare, without_folders
from pytest_trtctx.records.html_grid import diff_data, row_label, run_data
from pytest_trtctx.records.html_page import render
from pytest_trtctx.records.report import ReportError, load

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results"
#: The committed H200 reports: the main job, the main job with the hazards, the traced main job.
H200 = ("report-h200-matrix.json.gz", "report-h200-hazards.json.gz", "report-h200-traced.json.gz")
#: Committed pairs that differ: a backend change (the CUDA reference backend, then TensorRT-RTX
#: on the same H100), one GPU then two, and the main job then the main job with the hazards.
PAIRS = (
    ("report-h100-final.json.gz", "report-h100-rtx.json.gz"),
    ("report-h100-final.json.gz", "report-2xh100-all-orders.json.gz"),
    ("report-h200-matrix.json.gz", "report-h200-hazards.json.gz"),
)


def colour(test: dict[str, Any]) -> str:
    """A record's colour, read from the JSON here, apart from the page's own code."""
    if test["outcome"] is None:
        return "notrun"
    if (test.get("known_failure") or {}).get("status") == "stopped reproducing":
        return "gone"
    outcome = test["outcome"]
    return {"known-failure": "known", "error": "failed"}.get(outcome, outcome)


def changed(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """The tests whose cell changed from ``old`` to ``new``, read from the two JSON files here:
    another outcome, an output hash of both that differs, a known failure that stopped
    reproducing, a test in one report only or never run in either."""
    before = {t["nodeid"]: t for t in old["tests"]}
    after = {t["nodeid"]: t for t in new["tests"]}
    found = set(before) ^ set(after)
    for nodeid in set(before) & set(after):
        was, now = before[nodeid], after[nodeid]
        hashes = was["outputs_sha256"].keys() & now["outputs_sha256"].keys()
        if (
            was["outcome"] != now["outcome"]
            or None in (was["outcome"], now["outcome"])
            or any(was["outputs_sha256"][h] != now["outputs_sha256"][h] for h in hashes)
            or (now.get("known_failure") or {}).get("status") == "stopped reproducing"
        ):
            found.add(nodeid)
    return found


def cells(page: dict[str, Any]) -> list[tuple[int, str, dict[str, Any]]]:
    """Every filled cell: (test index, its row's scenario, its column)."""
    return [
        (index, row["scenario"], grid["columns"][col])
        for grid in page["grids"]
        for row in grid["rows"]
        for col, index in enumerate(row["cells"])
        if index >= 0
    ]


@pytest.mark.parametrize("name", H200)
def test_every_test_of_a_committed_report_is_one_cell_of_its_colour(name: str) -> None:
    report = load(RESULTS / name)
    page = run_data(report, name)
    placed = cells(page)
    assert sorted(i for i, _s, _c in placed) == list(range(len(report["tests"])))
    want = Counter(colour(t) for t in report["tests"])
    got: Counter[str] = Counter()
    for grid in page["grids"]:
        got.update({state: n for state, n in grid["counts"].items() if n})
    assert got == want and set(got) <= set(CELL_STATES)
    for index, scenario, column in placed:  # the row is the test's scenario, the column its spec
        test = report["tests"][index]
        assert page["tests"][index]["n"] == test["nodeid"]
        if test["spec"] is not None:
            assert scenario == (test["order"] or "(no order)")
            assert column["id"] == test["spec"]["name"]
        else:
            assert column["id"] == (test["order"] or "(no order)")


def test_the_matrix_grid_is_scenarios_by_specs_grouped_by_kernel_dtype_layout() -> None:
    page = run_data(load(RESULTS / "report-h200-hazards.json.gz"), "hazards")
    cuda = next(g for g in page["grids"] if g["title"] == "backend cuda")
    assert [c["groups"] for c in cuda["columns"]] == sorted(c["groups"] for c in cuda["columns"])
    assert len(cuda["columns"]) == 37
    scenarios = list(dict.fromkeys(r["scenario"] for r in cuda["rows"]))
    assert scenarios[:3] == ["torch-first", "trt-first", "driver-first"]
    assert {r["label"] for r in cuda["rows"]} == {"test_conv", "test_conv_fixed"}
    own = next(g for g in page["grids"] if g["kind"] == "own")
    assert [r["label"] for r in own["rows"]] == [
        "tests/regression/test_conv_matrix.py::test_explore"
    ]


@pytest.mark.parametrize(("base", "new"), PAIRS)
def test_a_diff_marks_exactly_the_cells_that_changed(base: str, new: str) -> None:
    old, now = load(RESULTS / base), load(RESULTS / new)
    page = diff_data(old, now, compare(old, now), (base, new), str)
    marked = {page["tests"][int(i)]["n"] for i in page["diff"]["marks"]}
    assert marked == changed(old, now) and marked
    assert {t["n"] for t in page["tests"]} == {t["nodeid"] for t in old["tests"] + now["tests"]}


def test_a_diff_of_a_backend_change_is_a_regression_with_its_kinds() -> None:
    old = load(RESULTS / "report-h100-final.json.gz")
    new = load(RESULTS / "report-h100-rtx.json.gz")
    page = diff_data(old, new, compare(old, new), ("cuda", "rtx"), str)
    kinds = Counter(m[0][0] for m in page["diff"]["marks"].values())
    assert kinds == {"regressed": 148, "fixed": 37, "removed": 225}
    assert page["diff"]["verdict"] == "REGRESSED"
    assert ["versions.tensorrt-rtx-cu13", "None", "'1.7.1.116'"] in page["diff"]["environment"]


def test_a_diff_page_names_the_settings_that_changed() -> None:
    """As the diff command's "Settings changes": run 26 ran without --trtctx-fast-contexts,
    run 33 with it (./dev matrix passes it)."""
    old = load(RESULTS / "report-h200-matrix-vendors-run26.json.gz")
    new = load(RESULTS / "report-h200-matrix-vendors-run33.json.gz")
    page = diff_data(old, new, compare(old, new), ("run26", "run33"), str)
    assert page["diff"]["settings"] == [["fast_contexts", "False", "True"]]
    assert page["diff"]["verdict"] == "no regression"


@pytest.mark.parametrize(("run", "said"), [("run26", "off"), ("run33", "on")])
def test_a_run_page_says_whether_fast_contexts_were_on(run: str, said: str) -> None:
    page = run_data(load(RESULTS / f"report-h200-matrix-vendors-{run}.json.gz"), run)
    assert ["fast contexts", said] in page["header"]


def test_two_identical_runs_mark_nothing() -> None:
    old = load(RESULTS / "report-h200-matrix.json.gz")
    new = load(RESULTS / "report-h200-traced.json.gz")
    page = diff_data(old, new, compare(old, new), ("a", "b"), str)
    assert page["diff"]["marks"] == {} and page["diff"]["verdict"] == "no regression"


def test_a_diff_without_folders_matches_a_clone_and_an_installed_run() -> None:
    old = load(RESULTS / "report-h200-matrix.json.gz")
    new = load(RESULTS / "report-h200-installed.json.gz")
    diff = compare(old, new, ignore_folders=True)
    page = diff_data(old, new, diff, ("clone", "installed"), without_folders)
    assert page["diff"]["marks"] == {} and len(page["tests"]) == len(new["tests"])


def test_an_outcome_the_page_does_not_know_is_an_error_naming_the_test() -> None:
    report = load(RESULTS / "report-h200-matrix.json.gz")
    report["tests"][3]["outcome"] = "exploded"
    with pytest.raises(ReportError, match=r"^bad\.json: test .*: outcome 'exploded' is not one"):
        run_data(report, "bad.json")


def test_row_labels_take_the_scenario_and_spec_out_of_the_id() -> None:
    nodeid = "t/test_m.py::test_conv[driver-first-k3s1d1g1_f32_b1_17x19]"
    assert row_label(nodeid, ("driver-first", "k3s1d1g1_f32_b1_17x19"), function_only=True) == (
        "test_conv"
    )
    assert row_label("t/m.py::test_b[x-trt-first-3]", ("trt-first",), function_only=False) == (
        "t/m.py::test_b[x-3]"
    )
    assert row_label("t/m.py::test_b[trt-first]", ("trt-first",), function_only=False) == (
        "t/m.py::test_b"
    )


def _inline_data(page: bytes) -> dict[str, Any]:
    found = re.search(rb'id="trtctx-data">([^<]*)</script>', page)
    assert found is not None
    return dict(json.loads(gzip.decompress(base64.b64decode(found.group(1)))))


def test_the_page_is_one_file_whose_text_cannot_break_out_of_it() -> None:
    report = load(RESULTS / "report-h200-matrix.json.gz")
    evil = "t.py::test[</script><script>alert(1)</script>{{JS}}\udcff]"
    report["tests"][0]["nodeid"] = evil
    report["tests"][0]["messages"] = ["<!-- </script>"]
    page = render(run_data(report, "evil.json"))
    assert page.count(b"</script>") == 2  # the data's element and the script's own
    assert b"http://" not in page and b"https://" not in page and b" src=" not in page
    data = _inline_data(page)
    assert data["tests"][0]["n"] == evil and data["strings"][data["tests"][0]["m"][0]] == (
        "<!-- </script>"
    )


def test_a_changed_hash_and_a_known_failure_that_stopped_are_marked_as_such() -> None:
    """The same run twice, one output's hash changed and one known failure passing in the second:
    exactly those two cells are marked, both as regressions (same environment)."""
    old = load(RESULTS / "report-h200-matrix.json.gz")
    new = json.loads(json.dumps(old))
    hashed = next(t for t in new["tests"] if t["outcome"] == "passed" and t["outputs_sha256"])
    output = next(iter(hashed["outputs_sha256"]))
    hashed["outputs_sha256"][output] = "0" * 64
    gone = next(t for t in new["tests"] if t["outcome"] == "known-failure")
    gone["outcome"] = "failed"
    gone["known_failure"] = {**gone["known_failure"], "status": "stopped reproducing"}
    page = diff_data(old, new, compare(old, new), ("a", "b"), str)
    marks = {page["tests"][int(i)]["n"]: m for i, m in page["diff"]["marks"].items()}
    assert set(marks) == changed(old, new) == {hashed["nodeid"], gone["nodeid"]}
    assert marks[hashed["nodeid"]][0][:1] == ["hash"] and marks[hashed["nodeid"]][0][2] == "1"
    assert marks[gone["nodeid"]][0][0] == "gone" and marks[gone["nodeid"]][0][2] == "1"
    assert page["diff"]["verdict"] == "REGRESSED"
    assert page["tests"][[t["n"] for t in page["tests"]].index(gone["nodeid"])]["s"] == "gone"
