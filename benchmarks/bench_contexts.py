"""What a CUDA context costs in a process that keeps others: create, load, destroy, one at a time
and many alive at once, with P such processes started together.

Each process is a new Python that imports torch and cuda-python, makes torch's first allocation
(the primary context: a worker under torch-first), compiles the reference backend's cubin once,
then waits for the others (a start time given to all). It then times, in milliseconds:

- ``alive``: ``--contexts`` contexts made one after another and kept (``cuCtxCreate``, the cubin
  loaded with ``cuModuleLoadData``, two 64 KiB allocations, popped): what a prebuild of a
  scenario with a context per engine does; then each destroyed (``cuCtxDestroy``), oldest first;
- ``one_at_a_time``: as many contexts, each made, loaded, used for one allocation, popped and
  destroyed before the next: what a test that builds its engine's context itself does;
- ``bare``: as many contexts made and destroyed with nothing in them.

Figures are per operation (median, max); the whole wall of each part is given with the process
count, so that a driver that serialises across processes shows as a wall that grows with P.

``--variants`` repeats it all for each way of making the contexts named (:data:`VARIANTS`: the
driver's environment and ``cuCtxCreate``'s flags), so that what a context costs under each is
compared in one call.

Usage: python benchmarks/bench_contexts.py [--contexts 10] [--processes 1 4] [--json out.json]
    [--variants default connections-1 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: A variant's variable that the child sets in its own environment after cuInit (KEY=VALUE).
AFTER_INIT = "TRTCTX_BENCH_AFTER_INIT"
#: Ways of making the contexts: the environment the driver reads at cuInit, and cuCtxCreate's flags.
VARIANTS: dict[str, tuple[dict[str, str], int]] = {
    "default": ({}, 0),
    # one hardware work queue per context instead of the default eight
    "connections-1": ({"CUDA_DEVICE_MAX_CONNECTIONS": "1"}, 0),
    "sched-spin": ({}, 0x01),  # CU_CTX_SCHED_SPIN
    "sched-blocking": ({}, 0x04),  # CU_CTX_SCHED_BLOCKING_SYNC
    "eager-loading": ({"CUDA_MODULE_LOADING": "EAGER"}, 0),
    # the same variable set in the process after cuInit and torch's context, before the first
    # cuCtxCreate: whether the driver reads it per context or once at cuInit
    "connections-1-after-init": ({AFTER_INIT: "CUDA_DEVICE_MAX_CONNECTIONS=1"}, 0),
}


def child(contexts: int, start_at: float, flags: int = 0) -> dict[str, Any]:
    import torch
    from cuda.bindings import driver as cu

    from pytest_trtctx.backends.kernels import compile_conv
    from pytest_trtctx.cuda.driver import check, create_context, init

    torch.zeros(1, device="cuda:0")  # torch first: the primary context, as in a worker
    init()
    if os.environ.get(AFTER_INIT):
        key, _, value = os.environ[AFTER_INIT].partition("=")
        os.environ[key] = value  # putenv: the driver's getenv sees it from now on
    major, minor = torch.cuda.get_device_capability(0)
    cubin = compile_conv(f"sm_{major}{minor}", cache_dir=None).data
    while time.time() < start_at:
        time.sleep(0.001)

    def ms(t0: float) -> float:
        return (time.perf_counter() - t0) * 1000

    def timed(times: dict[str, list[float]], step: str, *calls: Callable[[], Any]) -> Any:
        """Run ``calls`` and add their milliseconds to ``times[step]``; the last one's result."""
        t0 = time.perf_counter()
        result = None
        for call in calls:
            result = call()
        times.setdefault(step, []).append(ms(t0))
        return result

    def make() -> Any:
        return create_context(0, flags)  # made current, as pycuda's make_context

    def load() -> None:
        check("cuModuleLoadData", cu.cuModuleLoadData(cubin))

    def alloc() -> None:
        check("cuMemAlloc", cu.cuMemAlloc(65536))

    def pop() -> None:
        check("cuCtxPopCurrent", cu.cuCtxPopCurrent())

    def destroy(ctx: Any) -> Callable[[], None]:
        return lambda: check("cuCtxDestroy", cu.cuCtxDestroy(ctx))

    out: dict[str, Any] = {}
    # alive: made one after another and kept, then destroyed
    t: dict[str, list[float]] = {}
    wall = time.perf_counter()
    kept = []
    for _ in range(contexts):
        kept.append(timed(t, "create", make))
        timed(t, "load", load)
        timed(t, "alloc", alloc, alloc)
        pop()
    made = ms(wall)
    wall = time.perf_counter()
    for ctx in kept:
        timed(t, "destroy", destroy(ctx))
    out["alive"] = {"made_ms": round(made), "destroyed_ms": round(ms(wall)), **stats(t)}
    # one at a time (the load step here: the cubin and one allocation)
    t = {}
    wall = time.perf_counter()
    for _ in range(contexts):
        ctx = timed(t, "create", make)
        timed(t, "load", load, alloc)
        pop()
        timed(t, "destroy", destroy(ctx))
    out["one_at_a_time"] = {"wall_ms": round(ms(wall)), **stats(t)}
    # bare
    t = {}
    wall = time.perf_counter()
    for _ in range(contexts):
        ctx = timed(t, "create", make)
        pop()
        timed(t, "destroy", destroy(ctx))
    out["bare"] = {"wall_ms": round(ms(wall)), **stats(t)}
    return out


def stats(times: dict[str, list[float]]) -> dict[str, Any]:
    return {
        f"{k}_ms": {
            "median": round(statistics.median(v), 1),
            "max": round(max(v), 1),
            "each": [round(x) for x in v],
        }
        for k, v in times.items()
    }


def measure(count: int, contexts: int, env_vars: dict[str, str], flags: int) -> list[Any]:
    """``count`` child processes started together; what each reported."""
    start_at = time.time() + 8 + count * 0.3  # every process imported torch by then
    cmd = [sys.executable, __file__, "--contexts", str(contexts), "--child", str(start_at)]
    cmd += ["--flags", str(flags)]
    # Only the variant's own: a variable another variant sets is not inherited from this shell.
    varied = {key for env, _flags in VARIANTS.values() for key in env}
    env = {k: v for k, v in os.environ.items() if k not in varied} | env_vars
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(count)
    ]
    outs: list[dict[str, Any]] = []
    for proc in procs:
        lines = proc.communicate()[0].strip().splitlines()
        outs.append(json.loads(lines[-1]) if lines else {"error": "no output"})
    return outs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", type=int, default=10)
    # 16 processes keeping 10 contexts each ran a 139 GiB H200 out of device memory.
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["default"])
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--flags", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        try:
            print(json.dumps(child(args.contexts, args.child, args.flags)))
        except Exception as exc:  # out of device memory, ...: said, not lost
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 0
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "contexts": args.contexts,
        "runs": {},
    }
    try:
        import torch

        results["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        results["gpu"] = None
    if not results["gpu"]:
        print("bench_contexts: no CUDA device here; nothing to measure", file=sys.stderr)
        return 2
    for variant in args.variants:
        env_vars, flags = VARIANTS[variant]
        for count in args.processes:
            key = str(count) if variant == "default" else f"{variant}/{count}"
            results["runs"][key] = outs = measure(count, args.contexts, env_vars, flags)
            errors = [o["error"] for o in outs if "error" in o]
            if errors:
                print(
                    f"{variant}, {count} process(es): {len(errors)} failed, the first: {errors[0]}"
                )
                continue
            first = outs[0]
            print(
                f"{variant}, {count} process(es), {args.contexts} contexts each (process 1 "
                f"shown): alive: create {first['alive']['create_ms']['median']} ms, load "
                f"{first['alive']['load_ms']['median']} ms, destroy "
                f"{first['alive']['destroy_ms']['median']} ms (made {first['alive']['made_ms']} "
                f"ms, destroyed {first['alive']['destroyed_ms']} ms); one at a time: "
                f"{first['one_at_a_time']['wall_ms']} ms (create "
                f"{first['one_at_a_time']['create_ms']['median']}, destroy "
                f"{first['one_at_a_time']['destroy_ms']['median']}); bare: "
                f"{first['bare']['wall_ms']} ms"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
