"""What collecting in a child and again in each worker costs, against collecting in the pytest
process, measured in one run on the shipped regression suite (``tests/regression``).

Where tests are forked, the pytest process does not import test modules: a child collects and the
pytest process replays what it found (``pytest_trtctx.isolation.collection``), and each worker
collects its
own tests again after its order's recipe (``pytest_trtctx.isolation.proxy.find_items``). Measured
here, each a median over ``--runs`` pytest runs:

1. ``pytest_collection`` in the pytest process as pytest does it (``--collect-only``, which still
   collects in the pytest process): the alternative;
2. ``pytest_collection`` with the tests forked (``--trtctx-isolate=order``, every order): the
   fork, the child's collection, the pickled answer and the replay;
3. each worker's own collection, per order (``--trtctx-isolate=order``: all of an order's tests
   at once) and per test (``--trtctx-isolate=test`` on the tests selected by ``--per-test-k``).

Without a GPU no order's recipe runs (every test skips); collection is the same either way.

Usage: python benchmarks/bench_collection.py [--runs 3] [--per-test-k k1s1d1g1_f32]
    [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Loaded with -p in the runs measured: times pytest_collection in the pytest process and the
#: worker's own collection (the patch is inherited by every forked worker).
TIMER = """
import os, time
import pytest
import pytest_trtctx.isolation.worker as worker

def _write(kind, seconds, count=0):
    with open(os.environ["BENCH_TIMES"], "a") as fh:
        fh.write(f"{kind} {seconds * 1000:.3f} {count}\\n")

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection(session):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        _write("collection", time.perf_counter() - start, len(session.items))

_find = worker.find_items

def _timed(session, items):
    start = time.perf_counter()
    try:
        return _find(session, items)
    finally:
        _write("worker", time.perf_counter() - start, len(items))

worker.find_items = _timed
"""


def _run(args: list[str], tmp: Path) -> tuple[list[tuple[str, float, int]], float]:
    times = tmp / "times.txt"
    times.unlink(missing_ok=True)
    env = dict(os.environ, BENCH_TIMES=str(times), PYTHONPATH=str(tmp))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/regression", "-q", "-p", "no:cacheprovider",
         "-p", "bench_timer", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - start
    if done.returncode not in (0, 5):
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr}")
    rows = [line.split() for line in times.read_text().splitlines()]
    return [(kind, float(ms), int(n)) for kind, ms, n in rows], wall


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--per-test-k", default="k1s1d1g1_f32")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parent: list[float] = []
    child: list[float] = []
    per_order: list[float] = []
    per_test: list[float] = []
    walls: dict[str, list[float]] = {"collect-only": [], "isolate=order": []}
    items = 0
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "bench_timer.py").write_text(TIMER)
        for _ in range(args.runs):  # alternating, so that load on the machine hits both alike
            rows, wall = _run(["--collect-only", "--trtctx-order=all"], tmp)
            parent += [ms for kind, ms, _n in rows if kind == "collection"]
            items = max(n for kind, _ms, n in rows if kind == "collection")
            walls["collect-only"].append(wall)
            rows, wall = _run(["--trtctx-order=all", "--trtctx-isolate=order"], tmp)
            child += [ms for kind, ms, _n in rows if kind == "collection"]
            per_order += [ms for kind, ms, _n in rows if kind == "worker"]
            walls["isolate=order"].append(wall)
        rows, _wall = _run(
            ["--trtctx-order=torch-first", "--trtctx-isolate=test", "-k", args.per_test_k], tmp
        )
        per_test += [ms for kind, ms, _n in rows if kind == "worker"]
    result = {
        "machine": f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "tests collected": items,
        "collection in the pytest process, ms (median)": _median(parent),
        "collection in a child + replay, ms (median)": _median(child),
        "ratio child / in-process": round(_median(child) / _median(parent), 2),
        "a worker's collection of one order's tests, ms (median)": _median(per_order),
        "a worker's collection of one test, ms (median)": _median(per_test),
        "tests per-test run": len(per_test),
        "whole runs, s (median)": {k: round(statistics.median(v), 2) for k, v in walls.items()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
