"""Where the hazards job's seconds go: a timeline of every worker process, per scenario.

Runs ``pytest tests/regression --trtctx-order=all,hazards --trtctx-isolate=order --trtctx-prebuild``
(the hazards job as ``./dev matrix --trtctx-order=hazards`` runs it) once per ``--workers`` value,
and with ``--alone`` each scenario of the job on its own too. A plugin loaded with ``-p`` writes,
from every process of the run, when it happened (wall clock) and in which process:

- in each worker: its group received (``group``), the order's recipe applied (``applied``), its
  test modules imported (``found``), its engines prebuilt (``prebuilt``), then each test's setup
  start (``setup``) and its teardown end (``done``);
- in the pytest process: the session's start and end.

From those it prints, per scenario: its workers, its tests, the seconds from the session's start
to its first group and its last test's end, and where a worker's seconds went (the recipe, the
imports, the prebuild, the tests) summed over its workers; and the whole run's wall and pytest
seconds. ``--json`` keeps it all, with the raw timeline.

Usage: python benchmarks/bench_hazards.py [--workers 16 8 4] [--alone] [--orders all,hazards]
    [--json out.json] [--extra='ARGS'] [--timeout S]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: Loaded with -p in the pytest process, inherited by every process it forks. The worker's phases
#: are the functions ``isolation.worker.run_child`` calls, wrapped here (a benchmark's view; the
#: plugin itself records no timeline).
TIMER = """
import json, os, time
import pytest

def _write(kind, what=""):
    line = json.dumps([time.time(), os.getpid(), kind, what]) + "\\n"
    fd = os.open(os.environ["BENCH_TIMELINE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)

def _wrap(module, name, after):
    inner = getattr(module, name)
    def wrapped(*args, **kwargs):
        result = None
        try:
            result = inner(*args, **kwargs)
            return result
        finally:
            # the group read: its order ("(no order)": tests run without one)
            what = getattr(result, "order", None) or "(no order)" if after == "group" else ""
            _write(after, what)
    setattr(module, name, wrapped)

def pytest_configure(config):
    from pytest_trtctx.isolation import prebuild, worker
    _wrap(worker, "_read_group", "group")
    _wrap(worker, "apply_order", "applied")
    _wrap(worker, "find_items", "found")
    _wrap(prebuild, "prebuild_here", "prebuilt")

def pytest_sessionstart(session):
    _write("session")

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _write("setup", item.nodeid)

def pytest_runtest_logfinish(nodeid, location):
    if os.environ.get("BENCH_PARENT") == str(os.getpid()):
        _write("finished", nodeid)

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if os.environ.get("BENCH_PARENT") == str(os.getpid()):
        _write("end")
"""


KNOWN: list[str] = []


def analyse(lines: list[list[Any]], session_start: float) -> dict[str, Any]:
    """Per worker: its phases; per scenario: its span and where its workers' seconds went."""
    by_pid: dict[int, list[list[Any]]] = defaultdict(list)
    for row in lines:
        by_pid[int(row[1])].append(row)
    workers: list[dict[str, Any]] = []
    for pid, rows in by_pid.items():
        kinds = [r[2] for r in rows]
        if "group" not in kinds:
            continue
        at = {r[2]: float(r[0]) for r in rows if r[2] in ("group", "applied", "found", "prebuilt")}
        setups = [r for r in rows if r[2] == "setup"]
        order = str(next(r[3] for r in rows if r[2] == "group"))  # the group's, when received
        start = at["group"]
        applied = at.get("applied", start)
        found = at.get("found", applied)
        prebuilt = at.get("prebuilt", found)
        first = float(setups[0][0]) if setups else prebuilt
        end = max(float(r[0]) for r in rows)
        workers.append(
            {
                "pid": pid,
                "order": order,
                "tests": len(setups),
                "start_s": round(start - session_start, 3),
                "recipe_s": round(applied - start, 3),
                "imports_s": round(found - applied, 3),
                "prebuild_s": round(prebuilt - found, 3),
                "to_first_test_s": round(first - start, 3),
                "tests_s": round(end - first, 3),
                "end_s": round(end - session_start, 3),
            }
        )
    scenarios: dict[str, dict[str, Any]] = {}
    for w in workers:
        s = scenarios.setdefault(
            w["order"],
            {"workers": 0, "tests": 0, "first_start_s": 1e9, "last_end_s": 0.0, "summed_s": {}},
        )
        s["workers"] += 1
        s["tests"] += w["tests"]
        s["first_start_s"] = min(s["first_start_s"], w["start_s"])
        s["last_end_s"] = max(s["last_end_s"], w["end_s"])
        for key in ("recipe_s", "imports_s", "prebuild_s", "tests_s"):
            s["summed_s"][key] = round(s["summed_s"].get(key, 0.0) + w[key], 3)
    return {"processes": sorted(workers, key=lambda w: w["start_s"]), "scenarios": scenarios}


def run(
    orders: str, workers: str, extra: list[str], tmp: Path, timeout: float | None = None
) -> dict[str, Any]:
    """One run; past ``timeout`` seconds pytest is interrupted (SIGINT: it writes its summary
    and report) and the timeline so far is analysed."""
    timeline = tmp / "timeline.jsonl"
    timeline.unlink(missing_ok=True)
    args = [
        "tests/regression", "-q", "-p", "no:cacheprovider",
        "-p", "bench_hazards_timer", f"--trtctx-order={orders}", "--trtctx-isolate=order",
        "--trtctx-prebuild", f"--trtctx-workers={workers}", *extra,
    ]  # fmt: skip
    env = dict(os.environ, BENCH_TIMELINE=str(timeline))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(tmp), env.get("PYTHONPATH", "")) if p)
    t0 = time.time()
    # BENCH_PARENT names the pytest process once it exists: a wrapper script sets it there.
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        err += f"\nbench_hazards: interrupted after {timeout:g} s"
    wall = time.time() - t0
    lines = (
        [json.loads(x) for x in timeline.read_text().splitlines() if x] if timeline.exists() else []
    )
    session = min((float(r[0]) for r in lines if r[2] == "session"), default=t0)
    end = max((float(r[0]) for r in lines if r[2] == "end"), default=t0 + wall)
    summary = out.strip().splitlines()
    pytest_line = next((x for x in reversed(summary) if " in " in x), "")
    return {
        "orders": orders,
        "workers": workers,
        "exit": proc.returncode,
        "wall_s": round(wall, 2),
        "launch_to_session_s": round(session - t0, 2),
        "session_s": round(end - session, 2),
        "pytest_line": pytest_line,
        "output_tail": (out + err)[-12000:],
        **analyse(lines, session),
        "timeline": lines,
    }


#: Runs pytest in this process with BENCH_PARENT set to its pid (the timer tells the pytest
#: process from the processes it forks by it).
LAUNCH = """
import os, sys
import pytest
os.environ["BENCH_PARENT"] = str(os.getpid())
sys.exit(pytest.main(sys.argv[1:]))
"""


def show(result: dict[str, Any]) -> None:
    print(
        f"\n== --trtctx-order={result['orders']} --trtctx-workers={result['workers']}: "
        f"exit {result['exit']}, wall {result['wall_s']} s (launch to session "
        f"{result['launch_to_session_s']} s, session {result['session_s']} s)"
    )
    print(f"   {result['pytest_line']}")
    for line in result["output_tail"].splitlines():
        if line.startswith("cudnn plans"):  # the cuDNN backend's plan count
            print(f"   {line}")
    if result["exit"] != 0:
        print(result["output_tail"][-3000:])
    print(
        f"   {'scenario':<20}{'workers':>8}{'tests':>7}{'first':>8}{'last end':>10}"
        f"{'recipe':>9}{'imports':>9}{'prebuild':>10}{'tests':>8}   (seconds; the last four "
        "summed over its workers)"
    )
    rows = sorted(result["scenarios"].items(), key=lambda kv: -kv[1]["last_end_s"])
    for name, s in rows:
        t = s["summed_s"]
        print(
            f"   {name:<20}{s['workers']:>8}{s['tests']:>7}{s['first_start_s']:>8.2f}"
            f"{s['last_end_s']:>10.2f}{t['recipe_s']:>9.2f}{t['imports_s']:>9.2f}"
            f"{t['prebuild_s']:>10.2f}{t['tests_s']:>8.2f}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", nargs="+", default=["auto"])
    ap.add_argument("--orders", default="all,hazards")
    ap.add_argument("--alone", action="store_true", help="also each scenario of --orders alone")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--extra", default="", help="more pytest arguments, in one string")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per run, then ^C")
    args = ap.parse_args()
    from pytest_trtctx.scenarios import Registry

    KNOWN.extend(Registry().names())
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "bench_hazards_timer.py").write_text(TIMER)
        for workers in args.workers:
            runs.append(run(args.orders, workers, shlex.split(args.extra), tmp, args.timeout))
            show(runs[-1])
        if args.alone:
            met = [o for o in runs[0]["scenarios"] if o in KNOWN]  # those that ran, in order
            for order in met:
                runs.append(run(order, args.workers[0], shlex.split(args.extra), tmp, args.timeout))
                show(runs[-1])
    if args.json:
        doc = {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}",
            "runs": runs,
        }
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 1 if any(r["exit"] not in (0,) for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
