"""benchmarks/probe_vendor.py: the parent's bookkeeping (where a new process goes on after one
that was poisoned or died), its arguments, its scenario list (the registry's and its own), and
the probe itself: run for real on a GPU, and without one, where every case says why it skipped.

The bookkeeping is fed the lines the probe's own child prints (``BUILT``/``CASE`` JSON lines,
then ``DONE`` or ``POISONED``); nothing of CUDA stands behind them.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_trtctx.backends.cudnn import PACKAGE as CUDNN_PACKAGE
from pytest_trtctx.messages import INSTALL_CUDNN, INSTALL_TRITON
from pytest_trtctx.scenarios import HAZARD, Registry

from ..conftest import SUBPROCESS_TIMEOUT, gpu_skip_reason, needs_package, requires_gpu

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "probe_vendor.py"


def _probe() -> Any:
    spec = importlib.util.spec_from_file_location("probe_vendor", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("probe_vendor", module)
    spec.loader.exec_module(module)
    return module


PROBE = _probe()
SPEC = "k3s2d1g1_f16_b1_17x19"
OTHER = "k1s1d1g1_f32_b1_17x19"
SCENARIO, BACKEND = "driver-first", "cudnn"


def built(spec: str, plans: int | None) -> str:
    listed = None if plans is None else [{"name": f"eng{i}", "built": True} for i in range(plans)]
    record = {"scenario": SCENARIO, "backend": BACKEND, "spec": spec, "plans": listed}
    return "BUILT " + json.dumps(record)


def case(spec: str, plan: int | None, fixed: bool, **more: Any) -> str:
    record = {"scenario": SCENARIO, "backend": BACKEND, "spec": spec, "plan": plan, "fixed": fixed}
    return "CASE " + json.dumps({**record, "result": "ok", **more})


def job(restarts: int = 0, specs: tuple[str, ...] = (SPEC, OTHER)) -> Any:
    return PROBE.Job(SCENARIO, BACKEND, list(specs), restarts=restarts)


def finish(
    on: Any, lines: list[str], returncode: int | None = 0, most: int = 10**6
) -> tuple[Any, list[dict[str, Any]]]:
    """What the parent makes of a child that printed ``lines``: the next job and every record."""
    records = PROBE.Records()
    ended = PROBE.Ended(returncode, "\n".join(lines) + "\n", "the child's stderr", 1.0)
    return PROBE.finish(on, ended, most, records), records.items


def where(next_job: Any) -> tuple[list[str], int, bool, int]:
    return next_job.specs, next_job.first_plan, next_job.first_fixed, next_job.restarts


# The parent's bookkeeping. ---------------------------------------------------------------------


def test_a_child_that_says_done_leaves_nothing_and_its_records_are_kept() -> None:
    lines = [built(SPEC, 2), case(SPEC, 0, False), case(SPEC, 0, True), "DONE"]
    nxt, records = finish(job(), lines)
    assert nxt is None
    assert [(r["kind"], r.get("plan"), r.get("fixed"), r["process"]) for r in records] == [
        ("built", None, None, 0),
        ("case", 0, False, 0),
        ("case", 0, True, 0),
    ]


def test_poisoned_in_a_plain_run_a_new_process_runs_its_fixed_run_next() -> None:
    lines = [built(SPEC, 5), built(OTHER, 3), case(SPEC, 2, False, sticky="boom"), "POISONED"]
    nxt, records = finish(job(), lines)
    assert where(nxt) == ([SPEC, OTHER], 2, True, 1)
    assert records[-1]["kind"] == "process" and records[-1]["why"].startswith("poisoned")
    assert "gave_up" not in records[-1]


def test_poisoned_in_a_fixed_run_the_next_plan_goes_on() -> None:
    lines = [built(SPEC, 5), case(SPEC, 2, True, sticky="boom"), "POISONED"]
    assert where(finish(job(), lines)[0]) == ([SPEC, OTHER], 3, False, 1)


def test_past_the_last_plan_built_or_wanted_the_next_spec_goes_on() -> None:
    last_built = [built(SPEC, 5), case(SPEC, 4, True, sticky="boom"), "POISONED"]
    assert where(finish(job(), last_built)[0]) == ([OTHER], 0, False, 1)
    last_wanted = [built(SPEC, 5), case(SPEC, 2, True, sticky="boom"), "POISONED"]
    assert where(finish(job(), last_wanted, most=3)[0]) == ([OTHER], 0, False, 1)


def test_poisoned_in_the_last_case_nothing_is_left() -> None:
    lines = [built(OTHER, 1), case(OTHER, 0, True, sticky="boom"), "POISONED"]
    nxt, records = finish(job(specs=(OTHER,)), lines)
    assert nxt is None and records[-1]["kind"] == "process"


def test_a_child_that_died_inside_a_case_has_it_recorded_as_the_killer_and_skipped() -> None:
    lines = [built(SPEC, 5), case(SPEC, 2, False)]  # then it died in plan 2's fixed run
    nxt, records = finish(job(), lines, returncode=-11)
    killer = records[-1]
    assert (killer["kind"], killer["spec"], killer["plan"], killer["fixed"]) == (
        "case",
        SPEC,
        2,
        True,
    )
    assert killer["result"] == "the process died or timed out (exit -11)"
    assert records[-2]["kind"] == "process" and records[-2]["stderr_tail"] == "the child's stderr"
    assert where(nxt) == ([SPEC, OTHER], 3, False, 1)


def test_a_backend_of_one_engine_per_spec_has_no_plan_in_its_killer() -> None:
    lines = [built(SPEC, None), built(OTHER, None), case(SPEC, None, False)]
    nxt, records = finish(job(), lines, returncode=None)
    assert (records[-1]["spec"], records[-1]["plan"], records[-1]["fixed"]) == (SPEC, None, True)
    assert where(nxt) == ([OTHER], 0, False, 1)


def test_a_failed_build_ends_its_spec() -> None:
    failed = "CASE " + json.dumps(
        {"scenario": SCENARIO, "backend": BACKEND, "spec": SPEC, "result": "build: Boom: no"}
    )
    lines = [failed, built(OTHER, 2), "POISONED"]
    assert where(finish(job(), lines)[0]) == ([OTHER], 0, False, 1)


def test_it_gives_up_after_max_restarts_or_when_no_case_was_reported() -> None:
    lines = [built(SPEC, 5), case(SPEC, 2, False, sticky="boom"), "POISONED"]
    nxt, records = finish(job(restarts=PROBE.MAX_RESTARTS), lines)
    assert nxt is None
    assert records[-1]["gave_up"] == f"restarted {PROBE.MAX_RESTARTS} times"
    nxt, records = finish(job(), [built(SPEC, 5)], returncode=-9)
    assert nxt is None
    assert records[-1]["gave_up"] == "no case reported before it ended"


@pytest.mark.parametrize("plans", [None, 3])
def test_the_new_process_starts_exactly_after_the_case_it_was_told(plans: int | None) -> None:
    """What the parent hands on (``after``) and where the child starts (``Position.precedes``)
    agree: after any case, the new process runs the cases that follow it, each once."""
    specs = (SPEC, OTHER)
    slots = [None] if plans is None else list(range(plans))
    cases = [PROBE.Position(s, p, f) for s in specs for p in slots for f in (False, True)]
    counts = {} if plans is None else dict.fromkeys(specs, plans)
    for at, done in enumerate(cases):
        nxt = PROBE.after(job(), done, counts, 10**6)
        if nxt is None:
            assert at == len(cases) - 1
            continue
        start = PROBE.Position(nxt.specs[0], nxt.first_plan, nxt.first_fixed)
        runs = [c for c in cases if c.spec in nxt.specs and not c.precedes(start)]
        assert runs == cases[at + 1 :]


def test_the_summary_counts_each_scenario_plain_and_fixed() -> None:
    records = [
        {"kind": "case", "scenario": "a", "backend": "triton", "fixed": False, "written": False},
        {"kind": "case", "scenario": "a", "backend": "triton", "fixed": True, "written": True,
         "correct": True},
        {"kind": "case", "scenario": "b", "backend": "cudnn", "result": "skipped"},
        {"kind": "process", "scenario": "a", "backend": "triton"},
    ]  # fmt: skip
    lines = PROBE.summary(records)
    assert [line.split() for line in lines[1:]] == [
        ["a", "triton", "plain", "1", "0", "0"],
        ["a", "triton", "fixed", "1", "1", "1"],
        ["b", "cudnn", "none", "1", "0", "0"],
    ]


# Arguments and scenarios. ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--scenarios", "torch-first,no-such"], "unknown scenario: no-such; valid: "),
        (["--scenarios", " , "], "--scenarios names no scenario; valid: "),
        (["--backends", "cuda"], "unknown backend: cuda; valid: cudnn, triton"),
        (["--specs", "k9"], "unknown spec: k9; valid: the names in engines/conv_matrix.toml"),
        (["--jobs", "0"], "argument --jobs: must be 1 or more, not 0"),
        (["--max-plans", "-1"], "argument --max-plans: must be 1 or more, not -1"),
        (["--timeout", "0"], "argument --timeout: must be more than 0 seconds, not 0"),
    ],
)
def test_bad_arguments_are_argparse_errors_that_say_what_is_valid(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        PROBE.main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert said in err
    if "scenario" in said:
        assert err.rstrip().endswith(", ".join(PROBE.registry().names()))


def test_its_scenarios_are_the_registrys_and_its_own() -> None:
    shipped = Registry().names()
    assert PROBE.registry().names() == (*shipped, "created-then-torch")
    own = PROBE.registry()["created-then-torch"]
    assert own is PROBE.CREATED_THEN_TORCH and own.kind == HAZARD
    assert own.source == "benchmarks/probe_vendor.py"


# The probe, run. -------------------------------------------------------------------------------


def run_probe(tmp_path: Path, *args: str, timeout: float) -> list[dict[str, Any]]:
    out = tmp_path / "probe.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records: list[dict[str, Any]] = json.loads(out.read_text())["records"]
    return records


@pytest.mark.skipif(
    gpu_skip_reason() is None, reason="a GPU is here: the probe runs for real (the GPU test)"
)
def test_without_a_gpu_every_case_says_why_it_skipped(tmp_path: Path) -> None:
    scenarios = "torch-first,created-then-torch"
    records = run_probe(
        tmp_path, "--scenarios", scenarios, "--backends", "triton", "--specs", SPEC,
        "--jobs", "2", timeout=SUBPROCESS_TIMEOUT,
    )  # fmt: skip
    assert sorted((r["kind"], r["scenario"], r["result"], r["why"]) for r in records) == [
        ("case", "created-then-torch", "skipped", gpu_skip_reason()),
        ("case", "torch-first", "skipped", gpu_skip_reason()),
    ]


#: Each GPU run's cases: the spec's first two plans (cuDNN) or its one kernel (Triton), each run
#: plain and fixed, under an order that passes and one that fails until fixed.
PLANS = 2


@requires_gpu
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("cudnn", marks=needs_package("cudnn", CUDNN_PACKAGE, INSTALL_CUDNN)),
        pytest.param("triton", marks=needs_package("triton", "triton", INSTALL_TRITON)),
    ],
)
def test_on_a_gpu_the_fix_makes_driver_first_correct(backend: str, tmp_path: Path) -> None:
    """torch-first: every case correct; driver-first: no plain run correct (the engine's
    context is not current: docs/orders.md, "Vendor backends"), every fixed run correct."""
    records = run_probe(
        tmp_path, "--scenarios", "torch-first,driver-first", "--backends", backend,
        "--specs", SPEC, "--max-plans", str(PLANS), timeout=600,
    )  # fmt: skip
    assert [r for r in records if r["kind"] == "process"] == []
    cases = [r for r in records if r["kind"] == "case"]
    slots = [None] if backend == "triton" else list(range(PLANS))
    for scenario in ("torch-first", "driver-first"):
        mine = [r for r in cases if r["scenario"] == scenario]
        assert [(r["plan"], r["fixed"]) for r in mine] == [
            (p, f) for p in slots for f in (False, True)
        ], mine
        assert all(r["sticky"] is None for r in mine), mine
    correct: dict[tuple[str, bool], list[bool]] = {}
    for r in cases:
        correct.setdefault((r["scenario"], r["fixed"]), []).append(r["correct"])
    assert all(correct[("torch-first", False)] + correct[("torch-first", True)]), cases
    assert not any(correct[("driver-first", False)]), cases
    assert all(correct[("driver-first", True)]), cases
