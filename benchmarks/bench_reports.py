"""``pytest-trtctx diff`` and ``merge`` at fleet size: two generated reports of ``--tests`` tests.

Generates, from a seed, reports as a GPU CI fleet writes them (schema 2, every field the plugin
writes, ``json.dumps(indent=1, sort_keys=True)`` as ``--trtctx-report`` does):

- ``before.json``: one job's run of ``--tests`` tests, under four orders;
- ``after.json``: the same tests after an upgrade: every duration differs, 0.5 % newly fail,
  0.5 % newly skip, 0.2 % of output hashes changed, 0.1 % of tests removed and as many added;
- ``other.json``: another job of the same environment (other orders: other node ids), with 5 %
  of its tests the same no-order tests as ``before.json``'s, with the same results.

Then times ``pytest-trtctx diff before.json after.json`` and ``pytest-trtctx merge before.json
other.json -o merged.json``, each a whole new Python process (``python -m
pytest_trtctx.records.cli``),
``--repeat`` times, alternating, and reads each one's peak resident memory from the kernel
(``os.wait4``'s rusage of that process: its ``ru_maxrss``).

With ``--before DIR`` each command is first run once with the package as it was (``DIR``
holding it), for a ratio measured on the same machine and reports.

Usage: python benchmarks/bench_reports.py [--tests 1000000] [--repeat 3] [--keep DIR]
    [--before DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ORDERS = ("torch-first", "trt-first", "driver-first", "thread-hop")
OTHER_ORDERS = ("multi-device", "foreign-stream", "graph-capture", "lazy-stall")
#: Per mille of tests by outcome, in this order (the rest pass).
OUTCOMES = (("skipped", 120), ("known-failure", 40), ("xfailed", 30), ("failed", 10))
BACKEND_WHY = "auto: the CUDA reference backend, because cannot import tensorrt"
SKIP_WHY = "Skipped: multi-device needs at least 2 CUDA devices; this machine has 1"


def _spec(rng: random.Random) -> dict[str, Any]:
    k = rng.choice((1, 3, 5))
    return {
        "batch": rng.choice((1, 8)), "bias": True, "dilation": [1, 1], "dtype": "float32",
        "groups": 1, "height": 17, "in_channels": 64, "kernel": [k, k],
        "name": f"k{k}s1d1g1_f32_b1_17x19", "out_channels": 64, "padding": [0, 0],
        "stride": [1, 1], "width": 19,
    }  # fmt: skip


def record(rng: random.Random, index: int, order: str | None) -> dict[str, Any]:
    """One test's record as ``--trtctx-report`` writes it."""
    module = index // 250
    param = order or "no-order"
    nodeid = f"tests/test_m{module:04d}.py::test_{index % 250:03d}[{param}]"
    draw, outcome = rng.randrange(1000), "passed"
    for name, share in OUTCOMES:
        if draw < share:
            outcome = name
            break
        draw -= share
    rec: dict[str, Any] = {
        "backend": "cuda", "durations": {}, "fresh": index % 7 == 0, "known_failure": None,
        "messages": [BACKEND_WHY] if index % 10 == 0 else [], "nodeid": nodeid, "order": order,
        "order_applied": outcome != "skipped", "outcome": outcome, "outputs_sha256": {},
        "reruns": 0, "signature": None, "spec": _spec(rng) if index % 100 == 0 else None,
    }  # fmt: skip
    if outcome == "skipped":
        rec.update(backend=None, messages=[SKIP_WHY])
    elif outcome == "known-failure":
        rec["signature"] = "backend: CUDA_ERROR_INVALID_HANDLE"
        rec["known_failure"] = {
            "order": order, "signature": "^backend: CUDA_ERROR_INVALID_HANDLE",
            "status": "reproduced",
        }  # fmt: skip
    elif outcome == "failed":
        rec["signature"] = "AssertionError: outputs differ"
    if outcome in ("passed", "known-failure") and rng.random() < 0.7:
        rec["outputs_sha256"] = {"y": hashlib.sha256(nodeid.encode()).hexdigest()}
    _durations(rng, rec)
    return rec


def _durations(rng: random.Random, rec: dict[str, Any]) -> None:
    rec["durations"] = {
        "call": round(rng.random() * 0.3, 6), "setup": round(rng.random() * 0.01, 6),
        "teardown": round(rng.random() * 0.001, 6),
    }  # fmt: skip


def report(tests: list[dict[str, Any]], orders: tuple[str, ...]) -> dict[str, Any]:
    return {
        "created": "2026-12-02T00:00:00Z", "duration_s": 3600.0,
        "environment": {
            "cuda_driver_api": 13000, "cuda_runtime_torch": "13.0", "driver": "580.159.04",
            "gpu_error": None,
            "gpus": [{"compute_capability": "9.0", "index": 0, "name": "NVIDIA H200"}],
            "os": "Linux-6.18", "python": "3.12.3",
            "versions": {"cuda-bindings": "13.3.1", "python": "3.12.3", "torch": "2.11.0"},
        },
        "plugin_version": "0.1.0",
        "run": {"complete": True, "detail": None, "ended_by": "finished", "exit_status": 0,
                "not_run": 0},
        "schema": 2,
        "settings": {"backend": "auto", "device": 0, "isolate": "order", "orders": list(orders)},
        "tests": sorted(tests, key=lambda t: str(t["nodeid"])),
        "tool": "pytest-trtctx",
    }  # fmt: skip


def generate(n: int, seed: int) -> dict[str, dict[str, Any]]:
    """The three reports (see the module's doc), by file name."""
    rng = random.Random(seed)
    before = [record(rng, i, ORDERS[i % len(ORDERS)] if i % 20 else None) for i in range(n)]
    after = []
    for rec in before:
        draw = rng.randrange(10_000)
        if draw < 10:  # removed; one added in its place
            after.append(record(rng, n + len(after), ORDERS[0]))
            continue
        new = dict(rec)  # every value replaced below is replaced, never changed in place
        _durations(rng, new)
        if draw < 60 and new["outcome"] != "failed":
            new.update(outcome="failed", signature="AssertionError: outputs differ")
        elif draw < 110 and new["outcome"] != "skipped":
            new.update(outcome="skipped", messages=[SKIP_WHY], order_applied=False)
        elif draw < 130 and new["outputs_sha256"]:
            new["outputs_sha256"] = {"y": hashlib.sha256(b"changed" + bytes(draw)).hexdigest()}
        after.append(new)
    other = []
    for i, rec in enumerate(before):
        if rec["order"] is None:  # the same no-order test, the same results, in every job
            other.append(rec)
        else:
            other.append(record(rng, i, OTHER_ORDERS[i % len(OTHER_ORDERS)]))
    return {
        "before.json": report(before, ORDERS),
        "after.json": report(after, ORDERS),
        "other.json": report(other, OTHER_ORDERS),
    }


def write(folder: Path, n: int, seed: int) -> None:
    """Write the reports into ``folder`` unless there from an earlier run with the same n and
    seed (a stamp file says which)."""
    stamp = folder / "generated.txt"
    if stamp.exists() and stamp.read_text() == f"{n} {seed}\n":
        return
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in generate(n, seed).items():
        (folder / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    stamp.write_text(f"{n} {seed}\n")


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every process below it, now (0 once it is gone)."""
    total, todo = 0, [pid]
    while todo:
        this = todo.pop()
        try:
            status = Path(f"/proc/{this}/status").read_text()
            for task in Path(f"/proc/{this}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def measure(folder: Path, *args: str, code: Path | None = None) -> tuple[float, int, int, int]:
    """Wall seconds, peak resident memory of the largest process (the kernel's ``ru_maxrss``,
    from ``os.wait4``), peak resident memory of the whole process tree (the command and what it
    forks: sampled every 5 ms) and exit status of one ``pytest-trtctx`` call in a new process."""
    env = dict(os.environ, PYTHONPATH=str(code)) if code else None
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_trtctx.records.cli", *args],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    tree = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        tree = max(tree, tree_rss(proc.pid))
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"pytest-trtctx {' '.join(args)} exited {proc.returncode}")
    return elapsed, usage.ru_maxrss * 1024, max(tree, usage.ru_maxrss * 1024), proc.returncode


COMMANDS = {
    "diff": ("diff", "before.json", "after.json"),
    "merge": ("merge", "before.json", "other.json", "-o", "merged.json"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="generate into (and reuse) DIR")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a folder holding the package as it was (git archive COMMIT pytest_trtctx | tar -x "
        "-C DIR): each command is also run once with it, first",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        started = time.perf_counter()
        # Generated in a process of its own: Linux keeps a process's peak resident memory across
        # fork and exec, so every command timed from a process grown by the generation (6 GB for
        # a million tests) would read back that peak as its own.
        maker = multiprocessing.get_context("fork").Process(
            target=write, args=(folder, args.tests, args.seed)
        )
        maker.start()
        maker.join()
        if maker.exitcode != 0:
            raise SystemExit(f"generating the reports failed (exit {maker.exitcode})")
        sizes = {name: (folder / name).stat().st_size for name in ("before.json", "after.json",
                                                                     "other.json")}  # fmt: skip
        print(f"reports ready in {time.perf_counter() - started:.1f} s: {sizes}")
        seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
        peak: dict[str, list[int]] = {name: [] for name in COMMANDS}
        tree: dict[str, list[int]] = {name: [] for name in COMMANDS}
        loads: list[float] = []
        statuses: dict[str, int] = {}
        before: dict[str, Any] = {}
        for name, command in COMMANDS.items() if args.before else ():
            load = os.getloadavg()[0]
            wall, rss, whole, status = measure(folder, *command, code=args.before)
            before[name] = {"seconds": round(wall, 2), "peak rss MiB, all processes":
                            round(whole / 2**20), "load before": load}  # fmt: skip
            print(f"{name}, before: {wall:.2f} s, peak {whole / 2**20:.0f} MiB, exit {status}")
        for _ in range(args.repeat):
            for name, command in COMMANDS.items():
                loads.append(os.getloadavg()[0])
                wall, rss, whole, status = measure(folder, *command)
                seconds[name].append(wall)
                peak[name].append(rss)
                tree[name].append(whole)
                statuses[name] = status
                print(
                    f"{name}: {wall:.2f} s, peak {rss / 2**20:.0f} MiB (largest process), "
                    f"{whole / 2**20:.0f} MiB (all its processes), exit {status}, "
                    f"load before {loads[-1]:.2f}"
                )
        merged = (folder / "merged.json").stat().st_size
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "load average (1 min) before each run": loads,
        "tests per report": args.tests,
        "seed": args.seed,
        "report bytes": sizes,
        "merged report bytes": merged,
        "exit status": statuses,
        "before (the code in --before, once each)": before,
        "seconds": seconds,
        "peak rss MiB, largest process": {
            k: [round(v / 2**20) for v in vs] for k, vs in peak.items()
        },
        "peak rss MiB, all processes": {
            k: [round(v / 2**20) for v in vs] for k, vs in tree.items()
        },
        "median seconds": {k: round(statistics.median(v), 2) for k, v in seconds.items()},
        "seconds after / before": {
            k: round(statistics.median(seconds[k]) / before[k]["seconds"], 3) for k in before
        },
        "max peak rss MiB, all processes": {k: round(max(v) / 2**20) for k, v in tree.items()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
