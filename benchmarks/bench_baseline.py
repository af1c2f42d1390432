"""``--trtctx-baseline`` on a large suite: the same run with and without a baseline to compare.

Writes a test file of ``--tests`` tests (default 10 000), each handing one small output to the
plugin (``trtctx_outputs``), runs it once with ``--trtctx-baseline`` so that the baseline holds an
entry for every test, then times whole ``pytest`` processes, alternating: without a baseline, and
with it (every test compared with its entry). Prints the medians and their ratio: a baseline
read once per run costs little; one re-read for every test made the run quadratic.

Usage: python benchmarks/bench_baseline.py [--tests 10000] [--repeat 3] [--json out.json]
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

SUITE_HEAD = "import torch\n\nY = torch.arange(4.0)\n"
TEST = "\ndef test_{i}(trtctx_outputs):\n    trtctx_outputs.add('y', Y + {i})\n"


def run(folder: Path, *extra: str) -> float:
    """Seconds of one whole ``pytest`` process over the suite; fails loudly if a test failed."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_many.py", *extra],
        cwd=folder, capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pytest exited {done.returncode}:\n{done.stdout[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        body = SUITE_HEAD + "".join(TEST.format(i=i) for i in range(args.tests))
        (folder / "test_many.py").write_text(body)
        with_baseline = ("--trtctx-baseline=bl",)
        run(folder, *with_baseline)  # records an entry for every test
        (baseline,) = (folder / "bl").glob("*/baseline.json")
        entries = len(json.loads(baseline.read_text())["tests"])
        assert entries == args.tests, f"the baseline holds {entries} entries"
        without, within = [], []
        for _ in range(args.repeat):
            without.append(run(folder))
            within.append(run(folder, *with_baseline))
    result = {
        "tests": args.tests,
        "without_baseline_s": round(statistics.median(without), 2),
        "with_baseline_s": round(statistics.median(within), 2),
        "ratio": round(statistics.median(within) / statistics.median(without), 3),
        "runs": {"without": [round(t, 2) for t in without], "with": [round(t, 2) for t in within]},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
