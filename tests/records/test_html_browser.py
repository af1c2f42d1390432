"""The HTML page in a real browser: headless Chromium (the system's package) driven by
playwright. The grids of the committed GPU reports have the right cells of each colour, cell for
cell; opening a cell shows its record and diagnosis; a diff page marks exactly the cells that
changed; a 10 000-test page renders and filters; the page asks the network for nothing.

Where Chromium or playwright is missing these skip with the reason, except where
:data:`REQUIRE_BROWSER` is ``1`` (CI sets it): there a missing browser fails them, so that CI
can never pass with the page untested.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_trtctx.messages import CELL_STATES, MSG_HTML_NO_DIAGNOSIS, MSG_NEEDS_PACKAGE
from pytest_trtctx.records.cli import compare
from pytest_trtctx.records.cli import main as cli_main
from pytest_trtctx.records.report import load

from .test_html_grid import H200, PAIRS, RESULTS, changed, colour

ROOT = Path(__file__).resolve().parents[2]
#: Set to 1 by CI (.ci/run): the browser tests must run, a missing browser fails them.
REQUIRE_BROWSER = "TRTCTX_REQUIRE_BROWSER"


def _bench() -> Any:
    """benchmarks/bench_html.py: its made-up large report and how it starts Chromium."""
    spec = importlib.util.spec_from_file_location(
        "bench_html", ROOT / "benchmarks" / "bench_html.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_html", module)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


def browser_skip_reason() -> str | None:
    """None when headless Chromium can be driven here; else exactly what is missing."""
    if importlib.util.find_spec("playwright") is None:
        return MSG_NEEDS_PACKAGE.format(package="playwright", install="pip install -e '.[dev]'")
    if not os.access(BENCH.CHROMIUM, os.X_OK):
        return f"no Chromium at {BENCH.CHROMIUM}: apt-get install -y chromium chromium-driver"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = browser_skip_reason()
    if why is not None:
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{REQUIRE_BROWSER}=1 but the browser tests cannot run: {why}")
        pytest.skip(why)
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=BENCH.CHROMIUM, args=BENCH.CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A page opened in the browser, with every request it made."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.as_uri())
        self.page.wait_for_selector("body[data-ready]", timeout=60_000)

    def cells(self) -> list[dict[str, str]]:
        """Every coloured cell: its test, its state (class), its row's scenario, marks."""
        return list(
            self.page.evaluate(
                """[...document.querySelectorAll('td.c')].map(td => ({
                    nodeid: td.title.split('\\n')[0],
                    state: [...td.classList].find(c => c.startsWith('st-')).slice(3),
                    scenario: td.closest('tr').dataset.scenario,
                    mark: ([...td.classList].find(c => c.startsWith('mk-')) || '').slice(3)}))"""
            )
        )

    def open(self, nodeid: str) -> str:
        """Click the cell of ``nodeid``, as a person does; the panel's text."""
        cell = self.page.evaluate_handle(
            "n => [...document.querySelectorAll('td.c')]"
            ".find(td => td.title.split('\\n')[0] === n)",
            nodeid,
        ).as_element()
        assert cell is not None, nodeid
        cell.click()
        return str(self.page.inner_text("#panel"))

    def shown(self) -> int:
        return int(self.page.text_content("#shown").split(" of ")[0])


def _page(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "page.html"
    assert cli_main(["html", *args, "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", H200)
def test_the_grid_of_a_committed_report_matches_it_cell_for_cell(
    browser: Any, tmp_path: Path, name: str
) -> None:
    report = load(RESULTS / name)
    page = Page(browser, _page(tmp_path, str(RESULTS / name)))
    cells = page.cells()
    want = {t["nodeid"]: colour(t) for t in report["tests"]}
    assert {c["nodeid"]: c["state"] for c in cells} == want and len(cells) == len(want)
    counts = Counter(want.values())
    for state in CELL_STATES:  # the legend says the same counts
        shown = page.page.text_content(f'.count[data-state="{state}"]')
        assert shown == str(counts.get(state, 0)), state
    orders = {t["nodeid"]: t["order"] for t in report["tests"] if t["spec"] is not None}
    assert all(
        c["scenario"] == (orders[c["nodeid"]] or "(no order)")
        for c in cells
        if c["nodeid"] in orders
    )
    assert page.requests == [page.page.url] and page.errors == []


def test_opening_a_cell_shows_its_record_and_diagnosis(browser: Any, tmp_path: Path) -> None:
    name = "report-h200-traced.json.gz"
    report = load(RESULTS / name)
    test = next(
        t for t in report["tests"] if t["outcome"] == "known-failure" and t["trace"]["mismatches"]
    )
    page = Page(browser, _page(tmp_path, str(RESULTS / name)))
    panel = page.open(test["nodeid"])
    assert test["nodeid"] in panel and test["signature"] in panel
    assert test["trace"]["mismatches"][0] in page.page.inner_text("#panel pre.trace")
    assert MSG_HTML_NO_DIAGNOSIS in page.page.inner_text("#panel .diagnosis")  # not recorded then
    for output, digest in test["outputs_sha256"].items():
        assert f"{output}\t{digest}" in panel
    assert f"call\t{test['durations']['call']:.4f} s" in panel
    page.page.keyboard.press("Escape")
    assert page.page.is_hidden("#panel")


def test_a_cell_shows_the_diagnosis_its_report_holds(browser: Any, tmp_path: Path) -> None:
    """The ``trtctx contexts`` section as a GPU run records it (``diagnosis``): the cell shows
    it as it is, and its checks."""
    report = load(RESULTS / "report-h200-matrix.json.gz")
    test = next(t for t in report["tests"] if t["outcome"] == "known-failure")
    test["diagnosis"] = "order: driver-first (cuCtxCreate on device 0)\nat its end: #2 <primary>"
    test["checks"] = ["[FAIL] backend: cuLaunchKernel returned CUDA_ERROR_INVALID_HANDLE"]
    path = tmp_path / "report.json"
    path.write_text(__import__("json").dumps(report))
    page = Page(browser, _page(tmp_path, str(path)))
    page.open(test["nodeid"])
    assert page.page.inner_text("#panel pre.diagnosis") == test["diagnosis"]
    assert test["checks"][0] in page.page.inner_text("#panel")


@pytest.mark.parametrize(("base", "new"), PAIRS[:2])
def test_the_diff_page_marks_exactly_the_cells_that_changed(
    browser: Any, tmp_path: Path, base: str, new: str
) -> None:
    old, now = load(RESULTS / base), load(RESULTS / new)
    page = Page(browser, _page(tmp_path, "--diff", str(RESULTS / base), str(RESULTS / new)))
    marked = {c["nodeid"] for c in page.cells() if c["mark"]}
    assert marked == changed(old, now)
    verdict = "REGRESSED" if compare(old, now).regressed else "no regression"
    assert page.page.text_content("#verdict") == verdict
    page.page.check("#f-changed")  # the changed cells alone
    assert page.shown() == len(marked)
    assert page.requests == [page.page.url] and page.errors == []


def test_a_diff_of_identical_runs_marks_nothing(browser: Any, tmp_path: Path) -> None:
    base, new = RESULTS / "report-h200-matrix.json.gz", RESULTS / "report-h200-traced.json.gz"
    page = Page(browser, _page(tmp_path, "--diff", str(base), str(new)))
    assert [c for c in page.cells() if c["mark"]] == []
    assert "no cell changed" in page.page.inner_text("#changes")


def test_the_diff_page_shows_the_settings_that_changed(browser: Any, tmp_path: Path) -> None:
    base = RESULTS / "report-h200-matrix-vendors-run26.json.gz"
    new = RESULTS / "report-h200-matrix-vendors-run33.json.gz"
    page = Page(browser, _page(tmp_path, "--diff", str(base), str(new)))
    text = page.page.inner_text("body")
    assert "Settings changes (1)" in text and "fast_contexts" in text
    assert "Environment changes" not in text  # the same machine and versions
    assert page.errors == []


def test_the_diff_page_shows_the_environment_that_changed(browser: Any, tmp_path: Path) -> None:
    base, new = RESULTS / "report-h100-final.json.gz", RESULTS / "report-h100-rtx.json.gz"
    changed = compare(load(base), load(new)).environment
    page = Page(browser, _page(tmp_path, "--diff", str(base), str(new)))
    text = page.page.inner_text("body")
    assert f"Environment changes ({len(changed)})" in text and changed[0][0] in text
    assert "Settings changes" not in text
    assert page.errors == []


def test_ten_thousand_tests_render_and_filter(browser: Any, tmp_path: Path) -> None:
    report = BENCH.synthetic_report(10_000)
    path = tmp_path / "big.json"
    path.write_text(__import__("json").dumps(report))
    page = Page(browser, _page(tmp_path, str(path)))
    assert page.page.locator("td.c").count() == 10_000 and page.shown() == 10_000
    scenario = "driver-first"
    page.page.select_option("#f-scenario", scenario)
    under = [t for t in report["tests"] if t["order"] == scenario]
    assert page.shown() == len(under)
    page.page.uncheck('.f-state[value="passed"]')
    assert page.shown() == sum(colour(t) != "passed" for t in under)
    page.page.select_option("#f-scenario", "")
    page.page.check('.f-state[value="passed"]')
    page.page.fill("#f-text", "k5s1")
    assert page.shown() == sum("k5s1" in t["nodeid"] for t in report["tests"])
    hidden_rows = page.page.locator("table.grid tbody tr.hid").count()
    assert hidden_rows == 0  # every row has a k5 spec
    page.page.fill("#f-text", "no test is called this")
    assert page.shown() == 0 and page.page.locator("table.grid tbody tr:not(.hid)").count() == 0


@pytest.mark.parametrize("required", ["1", ""])
def test_a_missing_browser_skips_with_the_reason_or_fails_where_required(
    tmp_path: Path, required: str
) -> None:
    """No Chromium where TRTCTX_CHROMIUM points: the browser tests skip saying so, and fail
    where TRTCTX_REQUIRE_BROWSER=1 (CI), so that CI cannot pass with the page untested."""
    import subprocess

    env = {
        **os.environ,
        "TRTCTX_CHROMIUM": str(tmp_path / "no-chromium"),
        REQUIRE_BROWSER: required,
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/records/test_html_browser.py", "-k", "identical",
         "-p", "no:cacheprovider", "-rs", "-q"],
        cwd=ROOT, capture_output=True, text=True, check=False, env=env, timeout=240,
    )  # fmt: skip
    why = f"no Chromium at {tmp_path / 'no-chromium'}: apt-get install -y chromium chromium-driver"
    if importlib.util.find_spec("playwright") is None:  # what is missing first is said first
        why = MSG_NEEDS_PACKAGE.format(package="playwright", install="pip install -e '.[dev]'")
    if required:
        assert done.returncode == 1, done.stdout[-2000:]
        assert f"{REQUIRE_BROWSER}=1 but the browser tests cannot run: {why}" in done.stdout
    else:
        assert done.returncode == 0, done.stdout[-2000:]
        assert (
            "SKIPPED [1] tests/records/test_html_browser.py" in done.stdout and why in done.stdout
        )
