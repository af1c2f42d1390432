"""The HTML page of a large run: how long headless Chromium takes to open it and to filter it,
and how large the file is, against the same grids written out as markup (what a page that
renders every cell on the server ships).

    python benchmarks/bench_html.py [--tests 10000] [--repeat 5] [--json OUT.json]

The report is made up (``synthetic_report``): every scenario, two test functions per scenario
and as many specs as it takes, outcomes in the proportions of the main job with the hazards, a
known failure's trace sentence, one output hash per test. Chromium is the system's
(``/usr/bin/chromium``, or ``$TRTCTX_CHROMIUM``), driven by playwright; the figures are the
page's own clock (``performance.now()``): open is navigation start to the first frame after the
grids were drawn, a filter is the change event to the grids updated.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_trtctx.records.html_page import run_page  # noqa: E402
from pytest_trtctx.scenarios import HAZARDS, ORDERS, SCENARIOS  # noqa: E402

#: The system's Chromium (Debian's package); TRTCTX_CHROMIUM names another.
CHROMIUM = os.environ.get("TRTCTX_CHROMIUM", "/usr/bin/chromium")
#: Chromium's switches for a headless run that reaches no network of its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KNOWN_UNDER = {"driver-first", "thread-hop", *HAZARDS}
FUNCTIONS = ("test_conv", "test_conv_fixed")


def synthetic_spec(i: int) -> dict[str, Any]:
    k = (1, 3, 5, 7)[i % 4]
    dtype = ("float32", "float16", "bfloat16")[(i // 4) % 3]
    batch, size = (1, 8)[(i // 12) % 2], 7 + (i // 24) % 40
    name = f"k{k}s1d1g1_{dtype[:1]}{dtype[-2:]}_b{batch}_{size}x{size}_{i}"
    return {
        "name": name,
        "batch": batch,
        "in_channels": 8,
        "out_channels": 8,
        "height": size,
        "width": size,
        "kernel": [k, k],
        "stride": [1, 1],
        "padding": [0, 0],
        "dilation": [1, 1],
        "groups": 1,
        "dtype": dtype,
        "bias": True,
    }


def synthetic_test(scenario: str, function: str, spec: dict[str, Any]) -> dict[str, Any]:
    nodeid = f"tests/regression/test_conv_matrix.py::{function}[{scenario}-{spec['name']}]"
    record: dict[str, Any] = {
        "nodeid": nodeid,
        "order": scenario,
        "order_applied": scenario not in ("multi-device", "device-hop"),
        "fresh": True,
        "backend": "cuda",
        "spec": spec,
        "outcome": "passed",
        "signature": None,
        "known_failure": None,
        "messages": ["auto: the CUDA reference backend, because cannot import tensorrt"],
        "outputs_sha256": {spec["name"]: hashlib.sha256(nodeid.encode()).hexdigest()},
        "durations": {"setup": 0.0021, "call": 0.0031, "teardown": 0.0004},
    }
    if not record["order_applied"]:
        record.update(backend=None, outcome="skipped", outputs_sha256={})
        record["messages"] = [f"Skipped: {scenario} needs at least 2 CUDA devices; this has 1"]
    elif function == "test_conv" and scenario in KNOWN_UNDER:
        sig = "backend: CUDA_ERROR_INVALID_HANDLE"
        record.update(outcome="known-failure", signature=sig)
        record["known_failure"] = {"order": scenario, "signature": sig, "status": "reproduced"}
        record["trace"] = {
            "on": True,
            "mismatches": [f"kernel `conv` of {spec['name']} launched in another context"],
        }
    return record


def synthetic_report(tests: int) -> dict[str, Any]:
    """A report of ``tests`` tests: every scenario by two functions by enough specs."""
    per_spec = len(SCENARIOS) * len(FUNCTIONS)
    specs = [synthetic_spec(i) for i in range(-(-tests // per_spec))]
    records = [
        synthetic_test(scenario, function, spec)
        for spec in specs
        for scenario in SCENARIOS
        for function in FUNCTIONS
    ][:tests]
    return {
        "tool": "pytest-trtctx",
        "schema": 2,
        "plugin_version": "0.1.0",
        "created": "2026-12-02T00:00:00Z",
        "duration_s": 1.0,
        "settings": {"orders": list(SCENARIOS), "isolate": "order", "backend": "auto", "device": 0},
        "environment": {
            "gpus": [{"index": 0, "name": "a synthetic GPU", "compute_capability": "9.0"}],
            "driver": "0",
            "versions": {"python": platform.python_version()},
        },
        "run": {"complete": True, "exit_status": 0, "ended_by": "finished", "detail": None,
                "not_run": 0},
        "tests": sorted(records, key=lambda r: str(r["nodeid"])),
    }  # fmt: skip


#: In the page: change the scenario filter, the state filter, the text filter; each returns the
#: milliseconds from the change event to the grids updated (the handlers are synchronous).
FILTERS = {
    "scenario": "(() => { const s = document.getElementById('f-scenario'); s.value = 'SCENARIO';"
    " const t = performance.now(); s.dispatchEvent(new Event('change'));"
    " return performance.now() - t; })()".replace("SCENARIO", ORDERS[2]),
    "outcome": "(() => { const b = document.querySelector('.f-state[value=passed]');"
    " b.checked = !b.checked; const t = performance.now(); b.dispatchEvent(new Event('change'));"
    " return performance.now() - t; })()",
    "text": "(() => { const i = document.getElementById('f-text'); i.value = 'k5s1';"
    " const t = performance.now(); i.dispatchEvent(new Event('input'));"
    " return performance.now() - t; })()",
}


def measure(browser: Any, path: Path, repeat: int) -> dict[str, Any]:
    """Median open and filter milliseconds of the page at ``path`` over ``repeat`` loads."""
    opens: list[float] = []
    unpack: list[float] = []
    filters: dict[str, list[float]] = {name: [] for name in FILTERS}
    for _ in range(repeat):
        page = browser.new_page()
        page.goto(path.as_uri())
        page.wait_for_selector("body[data-painted]", timeout=60_000)
        opens.append(float(page.get_attribute("body", "data-painted") or "nan"))
        unpack.append(float(page.get_attribute("body", "data-unpacked") or "0"))
        for name, script in FILTERS.items():
            filters[name].append(page.evaluate(script))
        page.close()
    return {
        "bytes": path.stat().st_size,
        "open_ms": round(statistics.median(opens), 1),
        "unpack_ms": round(statistics.median(unpack), 1),
        "filter_ms": {name: round(statistics.median(v), 1) for name, v in filters.items()},
    }


def prerendered(browser: Any, page_path: Path, out: Path) -> None:
    """The same grids as static markup: the page's drawn DOM, its data and script dropped, and a
    script that only marks it ready (what a page that renders every cell on the server ships;
    its filters are this page's own script, which then reads the data from the markup)."""
    page = browser.new_page()
    page.goto(page_path.as_uri())
    page.wait_for_selector("body[data-ready]", timeout=60_000)
    markup = page.evaluate(
        "(() => { document.getElementById('trtctx-data').remove();"
        " document.querySelectorAll('script').forEach(s => s.remove());"
        " ['data-ready', 'data-unpacked', 'data-painted'].forEach(a =>"
        " document.body.removeAttribute(a));"
        " return '<!doctype html>' + document.documentElement.outerHTML; })()"
    )
    page.close()
    ready = (
        "<script>requestAnimationFrame(() => setTimeout(() => document.body.setAttribute("
        "'data-painted', performance.now().toFixed(1)), 0))</script></body>"
    )
    out.write_text(markup.replace("</body>", ready, 1), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--machine", default="CPU dev machine, 2 cores")
    parser.add_argument("--date", default=time.strftime("%Y-%m-%d"), help="the day it ran")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    report = synthetic_report(args.tests)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        page_path, static_path = Path(tmp) / "page.html", Path(tmp) / "static.html"
        started = time.perf_counter()
        page_path.write_bytes(run_page(report, "synthetic"))
        written_s = time.perf_counter() - started
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        prerendered(browser, page_path, static_path)
        ours = measure(browser, page_path, args.repeat)
        static = measure(browser, static_path, args.repeat)
        for unwired in ("filter_ms", "unpack_ms"):  # static cells: open time and size only
            static.pop(unwired)
        version = browser.version
        browser.close()
    result = {
        "benchmark": "bench_html",
        "machine": args.machine,
        "date": args.date,
        "chromium": version,
        "tests": args.tests,
        "repeat": args.repeat,
        "page": ours,
        "page_written_s": round(written_s, 3),
        "report_json_gz_bytes": len(gzip.compress(json.dumps(report).encode(), mtime=0)),
        "prerendered_markup": static,
        "size_ratio_prerendered_over_page": round(static["bytes"] / ours["bytes"], 2),
        "open_ratio_prerendered_over_page": round(static["open_ms"] / ours["open_ms"], 2),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
