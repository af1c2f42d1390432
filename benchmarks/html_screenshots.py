"""The README's pictures of the HTML page, made from committed GPU reports in headless Chromium.

    python benchmarks/html_screenshots.py      # writes docs/images/html-run.png, html-diff.png

The run page is the traced main job on the H200 with a known failure's cell open (its record and
the tracer's sentence). The diff page is the CUDA reference backend's run against TensorRT-RTX's
on the same H100 (a backend change: newly skipped, newly running and removed cells marked), its
environment table left out and its list of changes folded, so that the marked grid shows.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_html import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

from pytest_trtctx.records.cli import main as cli_main  # noqa: E402

RESULTS = ROOT / "docs" / "results"
IMAGES = ROOT / "docs" / "images"
RUN = RESULTS / "report-h200-traced.json.gz"
#: The cell opened in the run page's picture: a known failure the tracer explains.
OPENED = "tests/regression/test_conv_matrix.py::test_conv[driver-first-k3s1d1g1_f32_b1_17x19]"
BASE, NEW = RESULTS / "report-h100-final.json.gz", RESULTS / "report-h100-rtx.json.gz"


def main() -> None:
    from playwright.sync_api import sync_playwright

    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        run, diff = Path(tmp) / "run.html", Path(tmp) / "diff.html"
        assert cli_main(["html", str(RUN.relative_to(ROOT)), "-o", str(run)]) == 0
        assert cli_main(["html", "--diff", str(BASE.relative_to(ROOT)),
                         str(NEW.relative_to(ROOT)), "-o", str(diff)]) == 0  # fmt: skip
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 860})
        page.goto(run.as_uri())
        page.wait_for_selector("body[data-ready]")
        page.evaluate(
            "n => [...document.querySelectorAll('td.c')]"
            ".find(td => td.title.split('\\n')[0] === n).click()",
            OPENED,
        )
        page.screenshot(path=str(IMAGES / "html-run.png"))
        page = browser.new_page(viewport={"width": 1500, "height": 860})
        page.goto(diff.as_uri())
        page.wait_for_selector("body[data-ready]")
        # The list of changes folded to its headings: the marked grid shows below it.
        page.evaluate("document.querySelectorAll('#changes details').forEach(d => d.open = false)")
        page.evaluate("document.querySelector('table.env').remove()")
        page.screenshot(path=str(IMAGES / "html-diff.png"))
        browser.close()
    for name in ("html-run.png", "html-diff.png"):
        print(IMAGES / name, (IMAGES / name).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
