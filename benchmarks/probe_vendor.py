"""What real vendor engines do under every scenario of the suite: cuDNN's execution plans and a
Triton kernel, every spec of the matrix, each scenario and library in a fresh process.

No pytest runs here, but the scenarios are the plugin's own: each is looked up in the registry
(``pytest_trtctx.scenarios.Registry``, the shipped init orders and hazards, plus one of the
probe's below) and applied with ``Process.apply``, as a worker applies it (recipe first, in a
process where CUDA was never touched). Every engine is built right after it by the runtime the
suite uses (``Runtime.build_now``: the scenario's ``prepare`` and ``build_in``), before torch's
first call; then torch's inputs (``Runtime.make_input``); then each case runs through the
scenario's own ``run``, and again through its ``fix`` (what ``trtctx_fix_context`` applies). The
engines are the vendor backends' (``--trtctx-backend=cudnn`` / ``triton``), so what is measured
here is what the suite runs.

Per case (scenario x library x spec, for cuDNN x plan, plain then fixed) one JSON line: the
plan's index and engine name, the result (the library's exact words), whether the output was
written (a sentinel fill), whether it is correct (the CPU reference, the plugin's tolerances),
whether the error was sticky (a later plain torch op fails), and the run's seconds. A sticky
error poisons the process: the rest of its cases then run in a new one, as they do after a
process that died inside a case (that case is recorded as the killer and skipped). Run on a GPU
host::

    python benchmarks/probe_vendor.py --json probe.json
    python benchmarks/probe_vendor.py --scenarios torch-first,driver-first \\
        --backends cudnn,triton --max-plans 4 --json /tmp/p.json

``--jobs`` processes run at once (default 4). Scenarios: every one the registry ships, and
``created-then-torch``, the probe's own (a kernel loaded under a ``cuCtxCreate`` context and
launched after torch's first calls, as a TensorRT wrapper around torch's preprocessing does).
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_trtctx.scenarios import HAZARD, Registry, Run, Scenario  # noqa: E402
from pytest_trtctx.scenarios.driver_first import create_context  # noqa: E402

if TYPE_CHECKING:
    from pytest_trtctx.backends.base import Engine, ExecResult
    from pytest_trtctx.engines.spec import ConvSpec
    from pytest_trtctx.scenarios.runtime import Runtime

MATRIX = ROOT / "engines" / "conv_matrix.toml"
BACKENDS = ("cudnn", "triton")
#: A process that takes longer than this is killed; its remaining cases go to a new one.
CHILD_TIMEOUT_S = 900


# The probe's own scenario. -------------------------------------------------------------------


def after_torch_work(run: Run, *, pushed: bool) -> ExecResult:
    """A kernel of torch's on the engine's device first (a wrapper's preprocessing: torch's
    calls after the build are what make its primary context current), then the launch in the
    context current then; with the fix, the engine's context pushed around the launch."""
    import torch

    float((run.x * 1).sum())
    torch.cuda.synchronize(run.x.device)
    return run.go(pushed=pushed)


CREATED_THEN_TORCH = Scenario(
    name="created-then-torch",
    kind=HAZARD,
    # What it does: driver-first's recipe (the same first call), a run of its own.
    recipe=create_context,
    run=functools.partial(after_torch_work, pushed=False),
    fix=functools.partial(after_torch_work, pushed=True),
    # What it says of itself, in the words every scenario gives.
    expected=(
        "known failure as driver-first: the kernel loaded under a cuCtxCreate context, launched "
        "after torch's first calls made the primary context current"
    ),
    stands_for=("NVIDIA/TensorRT#4335",),
    first_call="cuCtxCreate (a TensorRT wrapper's own context)",
    built_in="created context",
    run_from="after a torch kernel on the same thread",
    source="benchmarks/probe_vendor.py",
)
#: Scenarios the probe adds to the registry's: not the suite's, but shapes its users meet.
OWN: tuple[Scenario, ...] = (CREATED_THEN_TORCH,)


def registry() -> Registry:
    """The shipped scenarios, then the probe's own (one the registry ships is not added twice)."""
    found = Registry()
    for scenario in OWN:
        if scenario.name not in found:
            found.add(scenario, scenario.source)
    return found


# The child: one scenario and library, a list of specs. ----------------------------------------


def emit(kind: str, record: dict[str, Any]) -> None:
    print(f"{kind} " + json.dumps(record, default=str), flush=True)


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


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


def check_output(spec: ConvSpec, y: Any, arithmetic: str | None = None) -> dict[str, Any]:
    """Whether ``y`` was written (no sentinel left) and is within the plugin's tolerances of the
    CPU reference, for the arithmetic the engine computes in (cuDNN's float32: TF32), as the
    suite checks it."""
    from pytest_trtctx.checks.outputs import TOLERANCES, untouched
    from pytest_trtctx.scenarios.runtime import reference

    host = y.detach().cpu()
    left = untouched(host)
    ref = reference(spec)
    atol, rtol = TOLERANCES[arithmetic or spec.dtype]
    diff = (host.float() - ref).abs()
    finite = bool(diff.isfinite().all())
    return {
        "written": left == 0,
        "untouched": left,
        "correct": left == 0 and finite and bool((diff <= atol + rtol * ref.abs()).all()),
        "max_abs_diff": float(diff.max()) if finite and diff.numel() else None,
    }


def execute(runtime: Runtime, engine: Engine, x: Any, fixed: bool) -> dict[str, Any]:
    """One run of ``engine`` through the scenario's ``run`` (or ``fix``), as ``Runtime.run``
    makes it, without its checks: what the library said, where it ran, what it wrote."""
    import torch

    spec, scenario = engine.spec, runtime.state.scenario
    y = runtime.outputs.empty(spec.output_shape, x.dtype, f"cuda:{engine.device}")
    torch.cuda.synchronize(y.device)
    # Told of a context the run destroyed, the runtime marks every engine of it (the probe's
    # engines included: a plan's case runs a copy), so that the next case builds anew.
    run = Run(runtime.state, runtime.backend, engine, x, y, runtime.cache_dir, runtime.context_lost)
    record: dict[str, Any] = {}
    began = time.perf_counter()
    import pytest

    try:
        result = scenario.fix(run) if fixed else scenario.run(run)
    except pytest.skip.Exception as exc:  # the scenario cannot run this engine, and says why
        record.update(result="skipped", why=str(exc.msg), seconds=0.0, sticky=None)
        return record
    except Exception as exc:
        record["result"] = f"probe: {first_line(exc)}"
    else:
        said = "ok" if result.ok and not result.errors else (result.signature or "failed")
        ran_in = result.ran_in.describe() if result.ran_in is not None else None
        record.update(result=said, errors=list(result.errors), ran_in=ran_in)
    record["seconds"] = round(time.perf_counter() - began, 3)
    record["sticky"] = poisoned = sticky(runtime.state.engine_device)
    if poisoned is None:
        record.update(check_output(spec, y, engine.details.get("arithmetic")))
    return record


def build_all(runtime: Runtime, specs: list[ConvSpec], base: dict[str, Any]) -> dict[str, Engine]:
    """Every spec's engine right after the recipe, before torch's first call, where the scenario
    builds engines; a BUILT line each, or a CASE line with why it was not built."""
    engines: dict[str, Engine] = {}
    for spec in specs:
        began = time.perf_counter()
        try:
            engine = engines[spec.name] = runtime.build_now(spec)
        except Exception as exc:
            emit("CASE", {**base, "spec": spec.name, "result": f"build: {first_line(exc)}"})
            continue
        emit(
            "BUILT",
            {
                **base,
                "spec": spec.name,
                "seconds": round(time.perf_counter() - began, 3),
                "built_in": engine.built_in.describe(),
                "plans": engine.details.get("plans"),
            },
        )
    return engines


def applied(scenario_name: str, backend_name: str) -> tuple[Runtime | None, str, str]:
    """The scenario applied in this process as a worker applies it, and the runtime that builds
    and runs the backend's engines under it; (None, result, why) where it cannot run here."""
    from pytest_trtctx.checks.outputs import Outputs
    from pytest_trtctx.cuda import probe
    from pytest_trtctx.errors import BackendUnavailable
    from pytest_trtctx.scenarios.process import Process
    from pytest_trtctx.scenarios.runtime import Runtime, choose_backend

    info = probe.machine()
    process = Process()
    state = process.apply(
        registry()[scenario_name],
        device=0,
        device_count=len(info.devices),
        why_no_gpu="" if info.has_gpu else info.why_no_gpu,
        names=", ".join(d.name for d in info.devices) or "none",
    )
    if state.skip_reason is not None:
        return None, "skipped", state.skip_reason
    if state.error is not None:
        return None, "error", state.error
    try:
        chosen, _why = choose_backend(backend_name, state)
    except BackendUnavailable as exc:
        return None, "skipped", str(exc)
    return Runtime(state, chosen, None, Outputs(), process), "", ""


def child(scenario: str, name: str, spec_names: list[str], start: Position, max_plans: int) -> int:
    """Apply ``scenario``, build every spec's engine, run each case from ``start`` on; the last
    line says DONE, or POISONED after a case whose error was sticky."""
    from pytest_trtctx.engines.matrix import load_matrix

    by_name = {s.name: s for s in load_matrix(MATRIX)}
    specs = [by_name[n] for n in spec_names]
    base = {"scenario": scenario, "backend": name}
    runtime, result, why = applied(scenario, name)
    if runtime is not None and max_plans < 10**6:
        runtime.plan_slots = max_plans  # cuDNN builds only the plans the probe runs
    if runtime is None:
        for spec in specs:
            emit("CASE", {**base, "spec": spec.name, "result": result, "why": why})
        print("DONE", flush=True)
        return 0
    engines = build_all(runtime, specs, base)
    for spec in specs:
        if spec.name in engines and not run_spec(runtime, engines, spec, base, start, max_plans):
            print("POISONED", flush=True)
            return 0
    print("DONE", flush=True)
    return 0


def run_spec(
    runtime: Runtime,
    engines: dict[str, Engine],
    spec: ConvSpec,
    base: dict[str, Any],
    start: Position,
    max_plans: int,
) -> bool:
    """Every case of ``spec`` from ``start`` on: each plan (at most ``max_plans``), plain then
    fixed, a CASE line each; False once a case left a sticky error (the process is poisoned).
    Where a run destroyed an engine's context, its next case gets an engine built anew, as the
    suite's next test does (an engine whose context is gone is never run again); where that
    build fails, its error ends the spec's cases (field ``rebuild``)."""
    from pytest_trtctx.backends.base import with_plan

    x = runtime.make_input(spec)  # torch's (first) call
    plans = engines[spec.name].details.get("plans")
    slots: list[int | None] = [None] if plans is None else list(range(len(plans)))
    for slot in slots[:max_plans]:
        for fixed in (False, True):
            if Position(spec.name, slot, fixed).precedes(start):
                continue
            record: dict[str, Any] = {**base, "spec": spec.name, "plan": slot, "fixed": fixed}
            engine = engines[spec.name]
            if engine.details.get("context_destroyed"):  # a run destroyed its context
                try:
                    engine = engines[spec.name] = runtime.build_now(spec)
                except Exception as exc:
                    emit("CASE", {**record, "rebuild": f"build: {first_line(exc)}"})
                    return True
            if slot is not None:
                plans = engine.details["plans"]
                if slot >= len(plans):  # an engine built anew was offered fewer plans
                    emit("CASE", {**record, "result": f"not offered: {len(plans)} plans"})
                    return True
                record.update(name=plans[slot]["name"], plans=len(plans))
                if not plans[slot]["built"]:
                    emit("CASE", {**record, "result": f"not built: {plans[slot]['error']}"})
                    continue
            one = engine if slot is None else with_plan(engine, slot)
            record.update(execute(runtime, one, x, fixed))
            emit("CASE", record)
            if record["sticky"] is not None:
                return False
    return True


# The parent: every (scenario, library) in a process of its own, restarted past a poison. --------


@dataclass(frozen=True)
class Position:
    """Where a case stands in a job: its spec, its plan (None: a backend with one engine per
    spec) and whether it is the fixed run (each plain run is followed by its fixed one)."""

    spec: str
    plan: int | None
    fixed: bool

    def precedes(self, other: Position) -> bool:
        """Whether this case comes before ``other`` in ``other``'s spec (a child starts at
        ``other``'s spec: a case of another spec comes after it)."""
        if self.spec != other.spec:
            return False
        return ((self.plan or 0), self.fixed) < ((other.plan or 0), other.fixed)


@dataclass
class Job:
    scenario: str
    backend: str
    specs: list[str]
    first_plan: int = 0
    first_fixed: bool = False
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
        str(int(job.first_fixed)),
        str(max_plans),
    ]


def after(job: Job, case: Position, counts: dict[str, int], most: int) -> Job | None:
    """The job that goes on after ``case`` in a new process; None when nothing is left. A plain
    run is followed by its fixed one, then the next plan (of the ``counts[spec]`` built, at most
    ``most``), then the next spec."""
    at = job.specs.index(case.spec)
    again = job.restarts + 1
    if not case.fixed:
        return Job(job.scenario, job.backend, job.specs[at:], case.plan or 0, True, again)
    if case.plan is not None and case.plan + 1 < min(counts.get(case.spec, 0), most):
        return Job(job.scenario, job.backend, job.specs[at:], case.plan + 1, False, again)
    if at + 1 < len(job.specs):
        return Job(job.scenario, job.backend, job.specs[at + 1 :], 0, False, again)
    return None


@dataclass
class Ended:
    """What a child process left: its exit status, its output and error text, its seconds."""

    returncode: int | None
    out: str
    err: str
    seconds: float


@dataclass
class Records:
    """Every record of the run, in order; each is printed as one JSON line as it comes."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        self.items.append(record)
        print(json.dumps(record), flush=True)
        return record


def finish(job: Job, ended: Ended, most: int, records: Records) -> Job | None:
    """Record what a child reported; the job for what it left, if anything."""
    cases: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for line in ended.out.splitlines():
        kind, _, payload = line.partition(" ")
        if kind not in ("CASE", "BUILT"):
            continue
        record = records.add({**json.loads(payload), "kind": kind.lower(), "process": job.restarts})
        if kind == "CASE":
            cases.append(record)
        elif isinstance(record.get("plans"), list):
            counts[record["spec"]] = len(record["plans"])
    ended_with = ended.out.rstrip().splitlines()[-1:] if ended.out.strip() else []
    if ended_with == ["DONE"]:
        return None
    poisoned = ended_with == ["POISONED"]
    why = (
        "poisoned by a sticky error: the rest runs in a new process"
        if poisoned
        else f"died or timed out (exit {ended.returncode})"
    )
    process = records.add(
        {
            "kind": "process",
            "scenario": job.scenario,
            "backend": job.backend,
            "why": why,
            "stderr_tail": ended.err[-1500:],
            "seconds": round(ended.seconds, 1),
        }
    )
    if job.restarts >= MAX_RESTARTS or not cases:  # nothing reported: no way to tell the killer
        process["gave_up"] = (
            f"restarted {job.restarts} times" if cases else "no case reported before it ended"
        )
        return None
    last = cases[-1]
    # A case with no "fixed" (a build that failed) ends its spec.
    nxt = after(
        job, Position(last["spec"], last.get("plan"), last.get("fixed", True)), counts, most
    )
    if poisoned or nxt is None:
        return nxt
    # It died inside the case after its last report: record that case as the killer, go past it.
    killer = Position(
        nxt.specs[0], nxt.first_plan if nxt.specs[0] in counts else None, nxt.first_fixed
    )
    records.add(
        {
            "kind": "case",
            "scenario": job.scenario,
            "backend": job.backend,
            "spec": killer.spec,
            "plan": killer.plan,
            "fixed": killer.fixed,
            "result": f"the process {why}",
            "process": job.restarts,
        }
    )
    return after(replace(nxt, restarts=job.restarts), killer, counts, most)


def summary(records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per (scenario, library, run): cases, written, correct; the run is plain or
    fixed, or ``none`` for a record of what did not run (a skip, a recipe error, a build)."""
    rows: dict[tuple[str, str, str], list[int]] = {}
    for r in records:
        if r.get("kind") != "case":
            continue
        run = "none" if "fixed" not in r else "fixed" if r["fixed"] else "plain"
        row = rows.setdefault((r["scenario"], r["backend"], run), [0, 0, 0])
        row[0] += 1
        row[1] += bool(r.get("written"))
        row[2] += bool(r.get("correct"))
    lines = [
        f"{'scenario':<20} {'backend':<8} {'run':<6} {'cases':>6} {'written':>8} {'correct':>8}"
    ]
    lines += [
        f"{s:<20} {b:<8} {run:<6} {n:>6} {w:>8} {c:>8}" for (s, b, run), (n, w, c) in rows.items()
    ]
    return lines


def chosen(
    ap: argparse.ArgumentParser, what: str, value: str | None, known: Sequence[str], listed: str
) -> list[str]:
    """The comma-separated names of ``value`` (all of ``known`` when not given), in order, each
    once; an argparse error naming the unknown ones and what is valid."""
    if value is None:
        return list(known)
    names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if not names:
        ap.error(f"--{what}s names no {what}; valid: {listed}")
    unknown = [n for n in names if n not in known]
    if unknown:
        ap.error(f"unknown {what}: {', '.join(unknown)}; valid: {listed}")
    return names


def at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def parser(scenarios: Sequence[str]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--specs", help="comma-separated spec names (default: the whole matrix)")
    ap.add_argument("--scenarios", help="comma-separated, from: " + ", ".join(scenarios))
    ap.add_argument("--backends", help="comma-separated, from: " + ", ".join(BACKENDS))
    ap.add_argument("--max-plans", type=at_least_one, default=10**6, help="cuDNN plans per spec")
    ap.add_argument("--jobs", type=at_least_one, default=4, help="processes at once")
    ap.add_argument(
        "--timeout", type=positive_seconds, default=CHILD_TIMEOUT_S, help="seconds per process"
    )
    ap.add_argument("--json", type=Path, help="write every record here")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    names = registry().names()
    ap = parser(names)
    args = ap.parse_args(argv)
    if args.child:
        scenario, backend, specs, first, fixed, most = args.child
        start = Position(specs.split(",")[0], int(first), fixed == "1")
        return child(scenario, backend, specs.split(","), start, int(most))
    from pytest_trtctx.engines.matrix import load_matrix

    matrix = [s.name for s in load_matrix(MATRIX)]
    specs = chosen(ap, "spec", args.specs, matrix, f"the names in {MATRIX.relative_to(ROOT)}")
    scenarios = chosen(ap, "scenario", args.scenarios, names, ", ".join(names))
    backends = chosen(ap, "backend", args.backends, BACKENDS, ", ".join(BACKENDS))
    records = Records()
    started = time.perf_counter()
    queue = [Job(s, b, list(specs)) for s in scenarios for b in backends]
    with tempfile.TemporaryDirectory(prefix="probe-vendor-") as tmp:
        run_all(queue, args.jobs, args.timeout, args.max_plans, Path(tmp), records)
    total = round(time.perf_counter() - started, 1)
    said = {"kind": "total", "seconds": total, "records": len(records.items)}
    print(json.dumps(said), flush=True)
    print("\n".join(summary(records.items)), flush=True)
    print(f"probe_vendor: {len(records.items)} records in {total} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"total": said, "records": records.items}, indent=1) + "\n")
    return 0


@dataclass
class Child:
    """A child process at work on a job; its output and error go to files (a pipe left unread
    would block it once full)."""

    job: Job
    proc: subprocess.Popen[bytes]
    began: float
    out: IO[bytes]
    err: IO[bytes]

    @classmethod
    def start(cls, job: Job, most: int, stem: Path) -> Child:
        out = open(stem.with_suffix(".out"), "w+b")  # noqa: SIM115
        err = open(stem.with_suffix(".err"), "w+b")  # noqa: SIM115
        proc = subprocess.Popen(command(job, most), stdout=out, stderr=err)
        return cls(job, proc, time.perf_counter(), out, err)

    def stop(self) -> Ended:
        """Kill it if it still runs, wait for it, and read what it left."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        texts = []
        for handle in (self.out, self.err):
            handle.seek(0)
            texts.append(handle.read().decode(errors="replace"))
            handle.close()
        return Ended(self.proc.returncode, texts[0], texts[1], time.perf_counter() - self.began)


def run_all(
    queue: list[Job], jobs: int, timeout: float, most: int, tmp: Path, records: Records
) -> None:
    """Run the queue, ``jobs`` processes at once; a process that ends early hands its remaining
    cases to a new one, first in line. Every process is waited for (killed past ``timeout``, or
    when the probe itself is interrupted)."""
    running: list[Child] = []
    started = 0
    try:
        while queue or running:
            while queue and len(running) < jobs:
                running.append(Child.start(queue.pop(0), most, tmp / str(started)))
                started += 1
            time.sleep(0.2)
            for one in list(running):
                if one.proc.poll() is None and time.perf_counter() - one.began <= timeout:
                    continue
                running.remove(one)
                again = finish(one.job, one.stop(), most, records)
                if again is not None:
                    queue.insert(0, again)
    finally:
        for one in running:
            one.stop()


if __name__ == "__main__":
    raise SystemExit(main())
