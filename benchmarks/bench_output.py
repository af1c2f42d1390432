"""A test's large output through the worker pipe, against plain pytest, in one run.

One passing test prints N MB (captured, as pytest captures it). Plain pytest keeps it in its own
process; with isolation the worker sends its reports (which carry the captured output) to the
pytest process over the report pipe. Whole ``pytest`` processes are timed, alternating plain and
isolated runs; medians. Each is also run with a test that prints nothing, so that what the
output itself costs (the difference) is shown apart from what an isolated run costs anyway (its
pytest process imports torch before the first fork: docs/isolation.md). Target: the output's
cost within 2x of plain pytest's at 100 MB.

Usage: python benchmarks/bench_output.py [--mb 100] [--repeat 3] [--isolate test] [--json out]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST = """
def test_prints():
    print("x" * ({mb} << 20))
"""


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def run(root: Path, extra: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    if done.returncode != 0:
        raise SystemExit(f"pytest {' '.join(extra)} failed ({done.returncode}): {last}")
    return took, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--isolate", default="test", choices=["test", "order"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configs = {
        "plain": ["-p", "no:trtctx"],
        "isolated": [f"--trtctx-isolate={args.isolate}", "--trtctx-timeout=10"],
    }
    times: dict[str, list[float]] = {}
    outcome: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for mb in (0, args.mb):
            (root / "test_output.py").write_text(TEST.format(mb=mb))
            for _ in range(args.repeat):
                for name, extra in configs.items():
                    took, outcome[f"{name} {mb} MB"] = run(root, extra)
                    times.setdefault(f"{name} {mb} MB", []).append(took)
    medians = {name: statistics.median(t) for name, t in times.items()}
    cost = {name: medians[f"{name} {args.mb} MB"] - medians[f"{name} 0 MB"] for name in configs}
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "mb": args.mb,
        "isolate": args.isolate,
        "seconds": times,
        "median_s": medians,
        "outcome": outcome,
        "output_cost_s": cost,
        "ratio_whole_run": medians[f"isolated {args.mb} MB"] / medians[f"plain {args.mb} MB"],
        "ratio_output_cost": cost["isolated"] / cost["plain"],
    }
    for name in times:
        print(f"{name:16} median {medians[name]:6.2f} s  ({outcome[name]})")
    for name in configs:
        print(f"{name:9} {args.mb} MB of output cost {cost[name]:.2f} s")
    print(
        f"ratio isolated / plain: output's cost {result['ratio_output_cost']:.2f}, "
        f"whole run {result['ratio_whole_run']:.2f} ({machine()}, {result['date']})"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
