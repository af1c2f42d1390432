"""The per-test mode against the context-creation floor, in one run, and where a test's time goes.

N tiny CUDA tests (``torch.ones(4, device="cuda").sum()``), W at a time:

1. **The floor**: a bare pool of W forked children of a parent that imported torch and never
   initialised CUDA; each child does the test's work (torch's first CUDA allocation creates the
   context) and exits. Per child: fork to start, the CUDA work, and exit (from the child's last
   word to its reaping: the driver tears the context down there).
2. **The plugin**: ``pytest --trtctx-order=torch-first --trtctx-workers=W`` on the same N tests
   (one fresh process per test), timed from the first test's start to the last one's end, and
   as a whole.

The ratio of (2) to (1) is what the plugin adds to what one fresh context per test costs anyway.

Usage: python benchmarks/bench_per_test.py [--tests 48] [--workers 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_isolation import CONFTEST  # benchmarks/ is this script's folder: sys.path[0]

# The stamps of bench_isolation's suite: each test's start and end on the system's monotonic
# clock (perf_counter_ns is CLOCK_MONOTONIC on Linux), comparable across the workers.
TEST = """
import torch

def test_tiny(trtctx_order, n):
    assert torch.ones(4, device="cuda").sum().item() == 4
"""


def floor(tests: int, workers: int) -> dict[str, float]:
    """The bare fork pool: its wall time and the median of each part of a child's life."""
    import torch  # imported, never initialised: as the plugin's pytest process

    assert not torch.cuda.is_initialized()
    parts: dict[str, list[float]] = {"fork_ms": [], "cuda_ms": [], "exit_ms": []}
    running: dict[int, tuple[int, int, float]] = {}  # pid -> (read fd, index, fork time)
    started = done = 0
    t0 = time.monotonic()
    while done < tests:
        while started < tests and len(running) < workers:
            r, w = os.pipe()
            forked = time.monotonic()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                begin = time.monotonic()
                assert torch.ones(4, device="cuda").sum().item() == 4
                end = time.monotonic()
                os.write(w, f"{begin} {end} {time.monotonic()}\n".encode())
                os._exit(0)
            os.close(w)
            running[pid] = (r, started, forked)
            started += 1
        pid, _status = os.wait()
        reaped = time.monotonic()
        r, _index, forked = running.pop(pid)
        begin, end, said = (float(v) for v in os.read(r, 256).split())
        os.close(r)
        parts["fork_ms"].append((begin - forked) * 1e3)
        parts["cuda_ms"].append((end - begin) * 1e3)
        parts["exit_ms"].append((reaped - said) * 1e3)
        done += 1
    wall = time.monotonic() - t0
    out = {k: round(statistics.median(v), 1) for k, v in parts.items()}
    return {"wall_s": round(wall, 2), "contexts_per_s": round(tests / wall, 2), **out}


def plugin(tests: int, workers: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "conftest.py").write_text(
            CONFTEST + f"\ndef pytest_generate_tests(metafunc):\n"
            f"    if 'n' in metafunc.fixturenames:\n"
            f"        metafunc.parametrize('n', range({tests}))\n"
        )
        (root / "test_tiny.py").write_text(TEST)
        stamps = root / "stamps"
        env = {**os.environ, "BENCH_STAMPS": str(stamps), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
               "pytest_trtctx.plugin", "--trtctx-order=torch-first",
               f"--trtctx-workers={workers}", *extra]  # fmt: skip
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
        whole = time.monotonic() - t0
        rows = [tuple(int(v) for v in line.split()) for line in stamps.read_text().splitlines()]
    first, last = min(r[0] for r in rows), max(r[1] for r in rows)  # ns
    return {
        "exit": proc.returncode,
        "tests_seen": len(rows),
        "wall_s": round((last - first) / 1e9, 2),
        "pytest_s": round(whole, 2),
        "summary": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=48)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results: dict[str, object] = {"tests": args.tests, "workers": args.workers}
    # One after the other, twice each, alternating: the GPU's state drifts within a run.
    for label in ("floor-1", "plugin-1", "floor-2", "plugin-2"):
        if label.startswith("floor"):
            done = subprocess.run(
                [sys.executable, __file__, "--floor", str(args.tests), str(args.workers)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[label] = json.loads(done.stdout)
        else:
            results[label] = plugin(args.tests, args.workers, [])
        print(label, results[label], flush=True)
    floors = [results[f"floor-{i}"]["wall_s"] for i in (1, 2)]  # type: ignore[index]
    plugins = [results[f"plugin-{i}"]["wall_s"] for i in (1, 2)]  # type: ignore[index]
    results["plugin_over_floor"] = round(min(plugins) / min(floors), 3)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--floor":
        print(json.dumps(floor(int(sys.argv[2]), int(sys.argv[3]))))
        raise SystemExit(0)
    raise SystemExit(main())
