"""What per-test isolation costs, against the alternative, measured in one run.

1. The isolation machinery alone (fork, hand-over of the test, report back, logging), with tests
   that do not touch CUDA, in a pytest process that imported torch: the per-test gap between one
   test's end and the next one's start, isolated (``--trtctx-isolate=test``, one worker) minus
   the same gap in-process (plugin inactive). Median over N tests.
2. The alternative: a new Python that imports torch, per test (median of K runs).
3. What a fresh CUDA initialisation adds per test (inherent to the isolation promised): torch's
   first allocation, and cuInit + cuCtxCreate, each in a child forked from a parent that imported
   torch and never initialised CUDA.

Usage: python benchmarks/bench_isolation.py [--tests 200] [--starts 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFTEST = """
import os, time, pytest
import torch  # the parent has torch imported, as a real suite's collection would

@pytest.fixture(autouse=True)
def _stamp(request):
    start = time.perf_counter_ns()
    yield
    end = time.perf_counter_ns()
    fd = os.open(os.environ["BENCH_STAMPS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{start} {end}\\n".encode())
    os.close(fd)
"""

TESTS = """
import pytest
@pytest.mark.parametrize("i", range({n}))
def test_plain(i):
    assert i >= 0
"""


def _gaps(stamps: Path) -> list[float]:
    pairs = sorted(tuple(map(int, line.split())) for line in stamps.read_text().splitlines())
    return [(b[0] - a[1]) / 1e6 for a, b in itertools.pairwise(pairs)]


def machinery(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "conftest.py").write_text(CONFTEST)
        (root / "test_bench.py").write_text(TESTS.format(n=n))
        out: dict[str, float] = {}
        for label, extra in (
            ("inprocess", []),
            # Two orders, tests that ask for none: each test forks, no order recipe runs.
            (
                "isolated",
                [
                    "--trtctx-order=torch-first,trt-first",
                    "--trtctx-isolate=test",
                    "--trtctx-workers=1",
                ],
            ),
        ):
            stamps = root / f"{label}.txt"
            env = dict(os.environ, BENCH_STAMPS=str(stamps))
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                cwd=root,
                env=env,
                check=True,
                capture_output=True,
            )
            out[f"{label}_wall_s"] = time.perf_counter() - t0
            gaps = _gaps(stamps)
            out[f"{label}_gap_median_ms"] = statistics.median(gaps)
            out[f"{label}_gap_p90_ms"] = statistics.quantiles(gaps, n=10)[-1]
        out["machinery_median_ms"] = out["isolated_gap_median_ms"] - out["inprocess_gap_median_ms"]
        return out


def torch_starts(k: int) -> dict[str, float]:
    times = []
    for _ in range(k):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"torch_start_median_ms": statistics.median(times), "torch_start_runs": k}


CUDA_INIT = r"""
import os, sys, time, json, statistics
import torch
from cuda.bindings import driver as drv
def child(kind):
    t0 = time.perf_counter()
    if kind == "torch":
        torch.empty(1, device="cuda"); torch.cuda.synchronize()
    else:
        drv.cuInit(0); err, dev = drv.cuDeviceGet(0)
        err, ctx = drv.cuCtxCreate(None, 0, dev)
        assert int(err) == 0, err
    return (time.perf_counter() - t0) * 1e3
res = {}
for kind in ("torch", "cuCtxCreate"):
    vals = []
    for _ in range(int(sys.argv[1])):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, str(child(kind)).encode()); os._exit(0)
        os.close(w); vals.append(float(os.read(r, 64))); os.close(r); os.waitpid(pid, 0)
    res[f"cuda_init_{kind}_median_ms"] = statistics.median(vals)
assert not torch.cuda.is_initialized()
print(json.dumps(res))
"""


CUDA_INIT_CONCURRENT = r"""
import os, sys, time, json, statistics
import torch
def child(w, go):
    code = 1
    try:  # a child never returns into the parent's loop, whatever happens
        os.read(go, 1)
        t0 = time.perf_counter()
        torch.empty(1, device="cuda"); torch.cuda.synchronize()
        os.write(w, (str((time.perf_counter() - t0) * 1e3) + "\n").encode())
        code = 0
    finally:
        os._exit(code)
res = {}
for n in [int(a) for a in sys.argv[1].split(",")]:
    r, w = os.pipe(); go_r, go_w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            child(w, go_r)
        pids.append(pid)
    os.close(w)
    t0 = time.perf_counter()
    os.write(go_w, b"x" * n)
    data = b""
    while data.count(b"\n") < n:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        data += chunk
    wall = (time.perf_counter() - t0) * 1e3
    for pid in pids:
        os.waitpid(pid, 0)
    vals = [float(x) for x in data.split()]
    assert len(vals) == n, f"{n - len(vals)} of {n} children failed to initialise CUDA"
    res[str(n)] = {"wall_ms": round(wall, 1),
                   "per_process_median_ms": round(statistics.median(vals), 1),
                   "per_process_max_ms": round(max(vals), 1)}
    os.close(r); os.close(go_r); os.close(go_w)
assert not torch.cuda.is_initialized()
print(json.dumps(res))
"""


def _child_json(script: str, arg: str, skipped_key: str) -> dict[str, object]:
    """Run ``script`` in a new Python; its last stdout line is a JSON object. Where the child
    fails (no GPU here), ``{skipped_key: why}`` with the child's last stderr line."""
    proc = subprocess.run(
        [sys.executable, "-c", script, arg], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {skipped_key: f"no GPU here ({last})"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def cuda_init_concurrent(levels: str) -> dict[str, object]:
    """torch's first CUDA allocation in n forked children at once, for each n in ``levels``.

    Says how much the driver serialises context creation on one GPU: the floor under the
    parallel matrix's wall time, however many workers run.
    """
    res = _child_json(CUDA_INIT_CONCURRENT, levels, "cuda_init_concurrent_skipped")
    return res if "cuda_init_concurrent_skipped" in res else {"cuda_init_concurrent": res}


def cuda_init(k: int) -> dict[str, object]:
    return _child_json(CUDA_INIT, str(k), "cuda_init_skipped")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=200)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--concurrency",
        default="1,4,8,16",
        help="numbers of processes that initialise CUDA at once (comma-separated)",
    )
    ap.add_argument("--cuda-only", action="store_true", help="only the CUDA initialisation parts")
    args = ap.parse_args()
    res: dict[str, object] = {}
    if not args.cuda_only:
        res.update(machinery(args.tests))
        res.update(torch_starts(args.starts))
    res.update(cuda_init(args.starts * 2))
    res.update(cuda_init_concurrent(args.concurrency))
    if not args.cuda_only:
        mach = float(res["machinery_median_ms"])  # type: ignore[arg-type]
        res["ratio_torch_start_over_machinery"] = float(res["torch_start_median_ms"]) / max(
            mach, 1e-6
        )  # type: ignore[arg-type]
    text = json.dumps(res, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
