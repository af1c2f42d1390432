"""Where the seconds before the first test go: the plugin's start against plain pytest's.

Two measurements, each a whole new ``pytest`` process, ``--repeat`` times, alternating:

1. **The same collected suite** (a module of ``--tests`` trivial tests, 412 by default: as many
   as the main job), plain (``-p no:trtctx``) and under the plugin as the main job runs
   (``--trtctx-order=torch-first --trtctx-isolate=order``: collected in a child, torch and
   cuda-python preloaded, the driver probed, a worker forked that collects again). Without a GPU
   the order's tests skip at setup: the start is the same. The figure is the time from the launch
   to the first test's start as the pytest process sees it; the ratio is plugin / plain.
2. **The main job** (``tests/regression --trtctx-order=all --trtctx-isolate=order
   --trtctx-prebuild``): the time from the launch to each phase of the pytest process
   (configured, collected, first test started, session finished, process ended). With
   ``--before DIR`` (the package as it was: ``git archive COMMIT pytest_trtctx | tar -x -C DIR``)
   the main job is also run with it, alternating.

Usage: python benchmarks/bench_startup.py [--repeat 5] [--tests 412] [--before DIR]
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
MAIN_JOB = ["tests/regression", "--trtctx-order=all", "--trtctx-isolate=order", "--trtctx-prebuild"]

#: Loaded with -p: writes when each phase of the pytest process happened (wall clock).
TIMER = """
import os, time
import pytest

_first = []
_PID = os.getpid()  # the pytest process; a forked worker or collecting child writes nothing

def _write(what):
    if os.getpid() != _PID:
        return
    with open(os.environ["BENCH_TIMES"], "a") as fh:
        fh.write(f"{what} {time.time():.6f}\\n")

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    _write("configured")

def pytest_collection_finish(session):
    _write("collected")

def pytest_runtest_logstart(nodeid, location):
    if not _first:
        _first.append(nodeid)
        _write("first-test")

@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    _write("finished")
"""


def run(cwd: Path, args: list[str], timer: Path, code: Path | None = None) -> dict[str, float]:
    """Seconds from the launch to each phase, and to the process's end ("ended"). Python runs
    with -P: the folder it starts in is not searched first, so that ``code`` (PYTHONPATH) is."""
    times = timer / "times.txt"
    times.unlink(missing_ok=True)
    path = os.pathsep.join(str(p) for p in (code, timer) if p)
    env = dict(os.environ, BENCH_TIMES=str(times), PYTHONPATH=path)
    launched = time.time()
    done = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "bench_timer",
         *args],
        cwd=cwd, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    ended = time.time()
    if done.returncode not in (0, 5):
        raise SystemExit(
            f"pytest {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}"
        )
    phases = {
        k: float(t) - launched
        for k, t in (line.split() for line in times.read_text().split("\n") if line)
    }
    phases["ended"] = ended - launched
    return phases


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tests", type=int, default=412)
    parser.add_argument("--before", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    plain: list[dict[str, float]] = []
    plugin: list[dict[str, float]] = []
    job: list[dict[str, float]] = []
    job_before: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        timer, suite = tmp / "timer", tmp / "suite"
        timer.mkdir()
        suite.mkdir()
        (timer / "bench_timer.py").write_text(TIMER)
        (suite / "pytest.ini").write_text("[pytest]\n")
        body = "".join(f"def test_{i}():\n    pass\n\n" for i in range(args.tests))
        (suite / "test_many.py").write_text(body)
        for _ in range(args.repeat):
            plain.append(run(suite, ["test_many.py", "-p", "no:trtctx"], timer))
            isolated = ["test_many.py", "--trtctx-order=torch-first", "--trtctx-isolate=order"]
            plugin.append(run(suite, isolated, timer))
            job.append(run(ROOT, MAIN_JOB, timer))
            if args.before:
                job_before.append(run(ROOT, MAIN_JOB, timer, code=args.before))
    first_plain = statistics.median(r["first-test"] for r in plain)
    first_plugin = statistics.median(r["first-test"] for r in plugin)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load average (1, 5, 15 min) at the end": os.getloadavg(),
        "repeat": args.repeat,
        "tests in the same suite": args.tests,
        "same suite, seconds from launch (medians)": {
            "plain pytest": medians(plain),
            "plugin (isolate=order)": medians(plugin),
        },
        "same suite, to the first test, plugin / plain": round(first_plugin / first_plain, 2),
        "main job, seconds from launch (medians)": medians(job),
    }
    if job_before:
        result["main job before (--before), seconds from launch (medians)"] = medians(job_before)
        result["main job, to the first test, now / before"] = round(
            statistics.median(r["first-test"] for r in job)
            / statistics.median(r["first-test"] for r in job_before),
            2,
        )
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
