"""What real vendor engines do under every init order and hazard: cuDNN's execution plans and a
Triton kernel, every spec of the matrix, each scenario and library in a fresh process.

No pytest and no plugin run here: the scenarios are written out below as
``pytest_trtctx/scenarios/`` apply them (recipe first, in a process where CUDA
was never touched; every engine built right after it, before torch's first call, in the context
the scenario builds engines in; then torch's inputs; then each run). The engines are the vendor
backends' own (``pytest_trtctx.backends.cudnn`` and ``.triton``), so what is measured here is
what ``--trtctx-backend=cudnn`` / ``triton`` run.

Per case (scenario x library x spec, and for cuDNN x plan) one JSON line: the plan's index and
engine name, the result (the library's exact words), whether the output was written (a sentinel
fill), whether it is correct (a CPU float32 reference, the plugin's tolerances), and whether the
error was sticky (a later plain torch op fails). A sticky error poisons the process: the rest of
its cases then run in a new one. Run on a GPU host::

    python benchmarks/probe_vendor.py --json probe.json
    python benchmarks/probe_vendor.py --scenarios driver-first,pushed-over-torch \\
        --backends triton --specs k3s1d1g1_f32_b1_17x19 --max-plans 4

``--jobs`` processes run at once (default 4). Scenarios: the init orders, the hazards, and two
more for the kernels a TensorRT wrapper meets around torch work: ``created-then-torch`` (loaded
under a ``cuCtxCreate`` context, launched after torch's first call: driver-first's shape) and
``pushed-over-torch`` (loaded under torch, launched while a created context is pushed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_trtctx.scenarios import HAZARDS, ORDERS  # noqa: E402

CREATED_THEN_TORCH = "created-then-torch"
PUSHED_OVER_TORCH = "pushed-over-torch"
SCENARIOS = (*ORDERS, *HAZARDS, CREATED_THEN_TORCH, PUSHED_OVER_TORCH)
BACKENDS = ("cudnn", "triton")
TWO_GPUS = ("multi-device", "device-hop")
ENV = {"lazy-stall": {"CUDA_MODULE_LOADING": "LAZY"}}
#: What each scenario's recipe does first (orders.py): its name there.
TORCH_FIRST = ("torch-first", "foreign-stream", "context-destroyed", "lazy-stall")
CREATED_FIRST = ("driver-first", "thread-hop", "graph-capture", CREATED_THEN_TORCH)
#: A process that takes longer than this is killed; its remaining cases go to a new one.
CHILD_TIMEOUT_S = 900


# The child: one scenario and library, a list of specs. ----------------------------------------


@dataclass
class State:
    """What the scenario's recipe left, as orders.OrderState keeps it."""

    scenario: str
    torch_device: int = 0
    engine_device: int = 0
    steps: list[str] = field(default_factory=list)
    foreign_stream: Any = None
    created: Any = None  # pushed-over-torch: the context pushed around each run


def emit(kind: str, record: dict[str, Any]) -> None:
    print(f"{kind} " + json.dumps(record, default=str), flush=True)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def recipe(state: State) -> str | None:
    """Run the scenario's recipe; a reason where it cannot run here."""
    import torch

    from pytest_trtctx.cuda import driver

    scenario = state.scenario
    driver.init()
    count = driver.device_count()
    if scenario in TWO_GPUS:
        if count < 2:
            return f"{scenario} needs 2 CUDA devices; this machine has {count}"
        state.engine_device = 1
    if scenario in TORCH_FIRST or scenario in ("multi-device", PUSHED_OVER_TORCH):
        torch.empty(1, device=f"cuda:{state.torch_device}")
        torch.cuda.synchronize(state.torch_device)
        state.steps.append("torch allocated (primary context)")
    if scenario == "trt-first":
        driver.set_current(driver.retain_primary(0))
        state.steps.append("primary context retained and made current")
    elif scenario in CREATED_FIRST:
        driver.create_context(0)
        state.steps.append("cuCtxCreate (as import pycuda.autoinit)")
    elif scenario == "foreign-stream":
        primary = driver.current()
        driver.create_context(0)
        state.foreign_stream = driver.create_stream()
        driver.set_current(primary)
        state.steps.append("a stream made in a created context; the primary current again")
    elif scenario == "fork-after-init":
        state.steps.append("cuInit only")
    elif scenario == "device-hop":
        driver.set_current(driver.retain_primary(1))
        state.steps.append("device 1's primary current on the main thread")
    return None


def make_backend(name: str, device: int) -> Any:
    if name == "cudnn":
        from pytest_trtctx.backends.cudnn import CudnnBackend

        return CudnnBackend(device, None)
    from pytest_trtctx.backends.triton import TritonBackend

    return TritonBackend(device, None)


def build(state: State, backend: Any, spec: Any) -> Any:
    """The spec's engine, built where the scenario builds engines (Runtime.build_now)."""
    from pytest_trtctx.cuda import driver
    from pytest_trtctx.scenarios.runtime import host_tensors

    _x, w, b = host_tensors(spec)
    select = state.scenario in TWO_GPUS
    own = state.scenario == "context-destroyed"
    if select:
        driver.push(driver.retain_primary(state.engine_device))
    elif own:
        driver.create_context(state.engine_device)
    try:
        return backend.build(spec, w, b)
    finally:
        if select or own:
            driver.pop()


def captured(backend: Any, engine: Any, x: Any, y: Any) -> Any:
    """graph-capture: the run captured by torch.cuda.graph, then replayed (Runtime._captured)."""
    import torch

    from pytest_trtctx.backends.base import ExecResult

    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream(device=engine.device)
    result = ExecResult("not run", False, None, [], None)
    said: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            with torch.cuda.graph(graph, stream=stream, capture_error_mode="relaxed"):
                result = backend.execute(engine, x, y, stream.cuda_stream)
            graph.replay()
            torch.cuda.synchronize(engine.device)
        except Exception as exc:
            said.append(f"capture: {first_line(exc)}")
    said += [f"capture: {w.message}" for w in seen]
    result.errors.extend(said)
    if said and result.signature is None:
        result.ok, result.signature = False, said[0]
    return result


def beside_a_poller(state: State, go: Callable[[], Any]) -> tuple[Any, float, bool]:
    """lazy-stall: the run while a kernel polls a host flag on another stream, released after
    lazy_stall.POLL_RELEASE_S (scenarios/lazy_stall.py); (result, waited s, stalled)."""
    import ctypes

    from pytest_trtctx.backends.cuda_ref import CudaReferenceBackend
    from pytest_trtctx.backends.kernels import POLL_KERNEL
    from pytest_trtctx.cuda import driver
    from pytest_trtctx.scenarios.lazy_stall import POLL_RELEASE_S

    drv, check = driver.api(), driver.check
    poll = CudaReferenceBackend(state.engine_device, None).function(POLL_KERNEL)
    host = check("cuMemHostAlloc", drv.cuMemHostAlloc(4, drv.CU_MEMHOSTALLOC_DEVICEMAP))
    flag = ctypes.c_int.from_address(int(host))
    flag.value = 0
    stream = check("cuStreamCreate", drv.cuStreamCreate(1))
    arg = ctypes.c_void_p(int(check("ptr", drv.cuMemHostGetDevicePointer(host, 0))))
    params = (ctypes.c_void_p * 1)(ctypes.addressof(arg))
    check(
        "poller", drv.cuLaunchKernel(poll, 1, 1, 1, 1, 1, 1, 0, stream, ctypes.addressof(params), 0)
    )
    released = threading.Event()

    def release() -> None:
        flag.value = 1
        released.set()

    timer = threading.Timer(POLL_RELEASE_S, release)
    timer.start()
    began = time.monotonic()
    try:
        result = go()
    finally:
        waited, stalled = time.monotonic() - began, released.is_set()
        timer.cancel()
        flag.value = 1
        drv.cuStreamSynchronize(stream)
        drv.cuStreamDestroy(stream)
        drv.cuMemFreeHost(host)
    return result, waited, stalled


def run(state: State, backend: Any, engine: Any, x: Any, y: Any) -> dict[str, Any]:
    """One run as the scenario prescribes (Runtime.run); what it reported."""
    import torch

    from pytest_trtctx.cuda import driver
    from pytest_trtctx.scenarios.runners import ForkFailure, run_in_fork, run_on_thread

    scenario = state.scenario
    if scenario == "multi-device":
        torch.cuda.set_device(state.torch_device)
    stream = state.foreign_stream if scenario == "foreign-stream" else None
    if scenario == "context-destroyed" and not engine.details.get("probe_destroyed"):
        driver.destroy_context(engine.context)
        engine.details["probe_destroyed"] = True

    def go() -> Any:
        return backend.execute(engine, x, y, stream)

    extra: dict[str, Any] = {}
    if scenario == "graph-capture":
        result = captured(backend, engine, x, y)
    elif scenario == "fork-after-init":
        forked = run_in_fork(go)
        if isinstance(forked, ForkFailure):
            return {"result": forked.reason, "errors": [forked.reason], "ran_in": None}
        result = forked
    elif scenario == "lazy-stall":
        result, waited, stalled = beside_a_poller(state, go)
        extra = {"waited_s": round(waited, 3), "stalled": stalled}
    elif scenario == "device-hop":

        def bound() -> Any:
            driver.set_current(driver.retain_primary(state.torch_device))
            return go()

        result = run_on_thread(bound)
    elif scenario == "thread-hop":
        result = run_on_thread(go)
    elif scenario == PUSHED_OVER_TORCH:
        driver.push(state.created)
        try:
            result = go()
        finally:
            driver.pop()
    else:
        result = go()
    if stream is not None:
        synced = driver.api().cuStreamSynchronize(stream)[0]
        if int(synced) != 0:
            result.errors.append(f"cuStreamSynchronize returned {driver.result_name(synced)}")
    ran_in = result.ran_in.describe() if result.ran_in is not None else None
    said = "ok" if result.ok and not result.errors else (result.signature or "failed")
    return {"result": said, "errors": list(result.errors), "ran_in": ran_in, **extra}


def sticky(device: int) -> str | None:
    """A later plain torch op's failure (the context is poisoned), or None."""
    import torch

    try:
        t = torch.ones(16, device=f"cuda:{device}")
        float((t * 2).sum())
        torch.cuda.synchronize(device)
    except Exception as exc:
        return first_line(exc)
    return None


def check_output(spec: Any, y: Any) -> dict[str, Any]:

    from pytest_trtctx.checks.outputs import TOLERANCES, untouched
    from pytest_trtctx.scenarios.runtime import reference

    host = y.detach().cpu()
    left = untouched(host)
    ref = reference(spec)
    atol, rtol = TOLERANCES[spec.dtype]
    diff = (host.float() - ref).abs()
    finite = bool(diff.isfinite().all())
    return {
        "written": left == 0,
        "untouched": left,
        "correct": left == 0 and finite and bool((diff <= atol + rtol * ref.abs()).all()),
        "max_abs_diff": float(diff.max()) if finite and diff.numel() else None,
    }


def child(scenario: str, name: str, spec_names: list[str], first_plan: int, max_plans: int) -> int:
    import torch

    from pytest_trtctx.backends.base import with_plan
    from pytest_trtctx.checks.outputs import sentinel_fill
    from pytest_trtctx.cuda import driver
    from pytest_trtctx.engines.matrix import load_matrix
    from pytest_trtctx.scenarios.runtime import host_tensors

    by_name = {s.name: s for s in load_matrix(ROOT / "engines" / "conv_matrix.toml")}
    specs = [by_name[n] for n in spec_names]
    state = State(scenario)
    base = {"scenario": scenario, "backend": name}
    try:
        skip = recipe(state)
    except Exception as exc:  # no driver, no device: every case says so
        skip = f"the recipe could not run: {first_line(exc)}"
    if skip is not None:
        for spec in specs:
            emit("CASE", {**base, "spec": spec.name, "result": "skipped", "why": skip})
        print("DONE", flush=True)
        return 0
    backend = make_backend(name, state.engine_device)
    engines: dict[str, Any] = {}
    for spec in specs:  # every engine right after the recipe, before torch's first call
        began = time.perf_counter()
        try:
            engines[spec.name] = build(state, backend, spec)
        except Exception as exc:
            emit("CASE", {**base, "spec": spec.name, "result": f"build: {first_line(exc)}"})
            continue
        engine = engines[spec.name]
        plans = engine.details.get("plans")
        emit(
            "BUILT",
            {
                **base,
                "spec": spec.name,
                "seconds": round(time.perf_counter() - began, 3),
                "built_in": engine.built_in.describe(),
                "plans": plans,
            },
        )
    if scenario == PUSHED_OVER_TORCH:
        state.created = driver.create_context(0)  # made current by cuCtxCreate: pop it again
        driver.pop()
    for index, spec in enumerate(specs):
        engine = engines.get(spec.name)
        if engine is None:
            continue
        x = host_tensors(spec)[0].to(f"cuda:{state.engine_device}")  # torch's (first) call
        plans = engine.details.get("plans")
        slots: list[int | None] = list(range(len(plans))) if plans is not None else [None]
        start = first_plan if index == 0 else 0
        for slot in slots[start : (max_plans if plans is not None else None)]:
            one = engine if slot is None else with_plan(engine, slot)
            record: dict[str, Any] = {**base, "spec": spec.name, "plan": slot}
            if slot is not None:
                record.update(name=plans[slot]["name"], plans=len(plans))
                if not plans[slot]["built"]:
                    emit("CASE", {**record, "result": f"not built: {plans[slot]['error']}"})
                    continue
            y = torch.empty(spec.output_shape, dtype=x.dtype, device=x.device)
            sentinel_fill(y)
            torch.cuda.synchronize(x.device)
            began = time.perf_counter()
            try:
                record.update(run(state, backend, one, x, y))
            except Exception as exc:
                record.update(result=f"probe: {first_line(exc)}")
            record["seconds"] = round(time.perf_counter() - began, 3)
            poisoned = sticky(state.engine_device)
            record["sticky"] = poisoned
            if poisoned is None:
                record.update(check_output(spec, y))
            emit("CASE", record)
            if poisoned is not None:
                print("POISONED", flush=True)
                return 0
    print("DONE", flush=True)
    return 0


# The parent: every (scenario, library) in a process of its own, restarted past a poison. --------


@dataclass
class Job:
    scenario: str
    backend: str
    specs: list[str]
    first_plan: int = 0
    restarts: int = 0


#: A (scenario, library) whose processes die this often is given up on (each death skips a case).
MAX_RESTARTS = 40


def command(job: Job, max_plans: int) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--child",
        job.scenario,
        job.backend,
        ",".join(job.specs),
        str(job.first_plan),
        str(max_plans),
    ]


def after(job: Job, spec: str, plan: int | None, counts: dict[str, int], most: int) -> Job | None:
    """The job that goes on after case (spec, plan); None when nothing is left."""
    at = job.specs.index(spec)
    if plan is not None and plan + 1 < min(counts.get(spec, 0), most):
        return Job(job.scenario, job.backend, job.specs[at:], plan + 1, job.restarts + 1)
    if at + 1 < len(job.specs):
        return Job(job.scenario, job.backend, job.specs[at + 1 :], 0, job.restarts + 1)
    return None


def finish(
    job: Job, returncode: int | None, out: str, err: str, seconds: float, most: int
) -> Job | None:
    """Record what a child reported; the job for what it left, if anything."""
    cases: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for line in out.splitlines():
        kind, _, payload = line.partition(" ")
        if kind not in ("CASE", "BUILT"):
            continue
        record = json.loads(payload)
        record["kind"], record["process"] = kind.lower(), job.restarts
        RESULTS.append(record)
        print(json.dumps(record), flush=True)
        if kind == "CASE":
            cases.append(record)
        elif isinstance(record.get("plans"), list):
            counts[record["spec"]] = len(record["plans"])
    ended = out.rstrip().splitlines()[-1:] if out.strip() else []
    if ended == ["DONE"]:
        return None
    poisoned = ended == ["POISONED"]
    why = (
        "poisoned by a sticky error: the rest runs in a new process"
        if poisoned
        else (f"died or timed out (exit {returncode})")
    )
    RESULTS.append(
        {
            "kind": "process",
            "scenario": job.scenario,
            "backend": job.backend,
            "why": why,
            "stderr_tail": err[-1500:],
            "seconds": round(seconds, 1),
        }
    )
    print(json.dumps(RESULTS[-1]), flush=True)
    if job.restarts >= MAX_RESTARTS:
        return None
    if not cases:  # nothing reported: no way to tell which case killed it
        return None
    last = cases[-1]
    nxt = after(job, last["spec"], last.get("plan"), counts, most)
    if poisoned or nxt is None:
        return nxt
    # It died inside the case after its last report: record that case as the killer, go past it.
    plan = nxt.first_plan if nxt.specs[0] in counts else None
    RESULTS.append(
        {
            "kind": "case",
            "scenario": job.scenario,
            "backend": job.backend,
            "spec": nxt.specs[0],
            "plan": plan,
            "result": f"the process {why}",
            "process": job.restarts,
        }
    )
    print(json.dumps(RESULTS[-1]), flush=True)
    return after(nxt, nxt.specs[0], plan, counts, most)


RESULTS: list[dict[str, Any]] = []


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--specs", help="comma-separated spec names (default: the whole matrix)")
    ap.add_argument("--scenarios", help="comma-separated, from: " + ", ".join(SCENARIOS))
    ap.add_argument("--backends", default=",".join(BACKENDS), help="cudnn, triton")
    ap.add_argument("--max-plans", type=int, default=10**6, help="cuDNN plans run per spec")
    ap.add_argument("--jobs", type=int, default=4, help="processes at once")
    ap.add_argument("--timeout", type=float, default=CHILD_TIMEOUT_S, help="seconds per process")
    ap.add_argument("--json", type=Path, help="write every record here")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        scenario, backend, specs, first, most = args.child
        return child(scenario, backend, specs.split(","), int(first), int(most))
    from pytest_trtctx.engines.matrix import load_matrix

    names = [s.name for s in load_matrix(ROOT / "engines" / "conv_matrix.toml")]
    specs = args.specs.split(",") if args.specs else names
    scenarios = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    backends = args.backends.split(",")
    for what, chosen, known in (
        ("spec", specs, names),
        ("scenario", scenarios, SCENARIOS),
        ("backend", backends, BACKENDS),
    ):
        unknown = [c for c in chosen if c not in known]
        if unknown:
            ap.error(f"unknown {what}: {', '.join(unknown)}")
    queue = [Job(s, b, list(specs)) for s in scenarios for b in backends]
    started = time.perf_counter()
    running: list[tuple[Job, subprocess.Popen[bytes], float, Any, Any]] = []
    with tempfile.TemporaryDirectory(prefix="probe-vendor-") as tmp:
        while queue or running:
            while queue and len(running) < max(args.jobs, 1):
                job = queue.pop(0)
                env = {**os.environ, **ENV.get(job.scenario, {})}
                out = open(Path(tmp) / f"{len(RESULTS)}-{time.monotonic_ns()}.out", "w+b")  # noqa: SIM115
                err = open(Path(out.name).with_suffix(".err"), "w+b")  # noqa: SIM115
                proc = subprocess.Popen(
                    command(job, args.max_plans), env=env, stdout=out, stderr=err
                )
                running.append((job, proc, time.perf_counter(), out, err))
            time.sleep(0.2)
            for entry in list(running):
                job, proc, began, out, err = entry
                late = time.perf_counter() - began > args.timeout
                if proc.poll() is None and not late:
                    continue
                if late and proc.poll() is None:
                    proc.kill()
                proc.wait()
                running.remove(entry)
                texts = []
                for handle in (out, err):
                    handle.seek(0)
                    texts.append(handle.read().decode(errors="replace"))
                    handle.close()
                again = finish(
                    job,
                    proc.returncode,
                    texts[0],
                    texts[1],
                    time.perf_counter() - began,
                    args.max_plans,
                )
                if again is not None:
                    queue.insert(0, again)
    total = round(time.perf_counter() - started, 1)
    summary = {"kind": "total", "seconds": total, "records": len(RESULTS)}
    print(json.dumps(summary), flush=True)
    print(f"probe_vendor: {len(RESULTS)} records in {total} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"total": summary, "records": RESULTS}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
