"""What the pytest process does before the first test where tests are forked: torch and
cuda-python are imported there while a child collects (``collection.collect_in_child``'s
``meanwhile``), not after; the child itself is forked before, and the workers after."""

from __future__ import annotations

import json

import pytest

from ..conftest import cpu_orders, run_pytest

pytest.importorskip(
    "torch", reason="torch is not installed: it is what the pytest process preloads"
)

#: Each process that imports the test module says whether torch was imported there already.
SEEN = """
import json, os, sys

with open("seen.jsonl", "a") as out:
    out.write(json.dumps({"pid": os.getpid(), "torch": "torch" in sys.modules}) + "\\n")

def test_a(trtctx_order):
    pass
"""
CONFTEST = """
import json, os, sys

def pytest_collection_finish(session):
    with open("collected.jsonl", "a") as out:
        out.write(json.dumps({"pid": os.getpid(), "torch": "torch" in sys.modules}) + "\\n")
"""


def test_torch_is_imported_while_a_child_collects(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_seen=SEEN)
    pytester.makeconftest(CONFTEST)
    result = run_pytest(
        pytester, *cpu_orders(pytester), "--trtctx-order=torch-first", "--trtctx-isolate=order"
    )
    result.assert_outcomes(passed=1)
    seen = [json.loads(line) for line in (pytester.path / "seen.jsonl").read_text().splitlines()]
    collected = (pytester.path / "collected.jsonl").read_text().splitlines()
    # The pytest process never imports the test module: its collection is replayed there.
    parent = [c for c in map(json.loads, collected) if c["pid"] not in {s["pid"] for s in seen}]
    # Collected: the pytest process has torch, imported while its child collected.
    assert [p["torch"] for p in parent] == [True], collected
    # The collecting child was forked before the import began; the worker after it ended.
    assert [s["torch"] for s in seen] == [False, True], seen
