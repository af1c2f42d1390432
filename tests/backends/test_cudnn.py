"""The cuDNN backend (pytest_trtctx.backends.cudnn) and its plan slots
(pytest_trtctx.settings.plan_slots, backends.plans).

Without a GPU: what it imports, how it is selected and described, the graph as the frontend lays
it out for every spec of the matrix (the frontend's own shape inference, no lowering), the plan
slots in test ids and the slot's plan picked in the test's process, and the skip where the
frontend is missing. On a GPU (in a child process): every plan the heuristics offer, run under
torch-first and under driver-first's context switch, and with the build's context pushed.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_trtctx import backends
from pytest_trtctx.backends.base import Engine, with_plan
from pytest_trtctx.backends.cudnn import ARITHMETIC_FLOAT32, DESCRIPTION, PACKAGE
from pytest_trtctx.backends.plans import PlanSkipped, pick, slot_id
from pytest_trtctx.engines.spec import ConvSpec
from pytest_trtctx.errors import BackendUnavailable, ConfigError
from pytest_trtctx.messages import (
    INSTALL_CUDNN,
    MSG_NEEDS_PACKAGE,
    MSG_PLAN_NOT_BUILT,
    MSG_PLAN_NOT_OFFERED,
    MSG_PLANS_CUT,
)

from ..conftest import (
    MATRIX_A_F32,
    MATRIX_B_F16,
    cpu_orders,
    in_child,
    marked_suite,
    modules_after,
    needs_package,
    requires_gpu,
    run_pytest,
)

ROOT = Path(__file__).resolve().parents[2]
HAVE_FRONTEND = importlib.util.find_spec("cudnn") is not None
needs_frontend = needs_package("cudnn", PACKAGE, INSTALL_CUDNN)
SPEC = ConvSpec("k3_f16", 1, 8, 16, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, "float16")
#: float32: the heuristics offer TF32 tensor-core plans for it, checked at TF32's tolerance.
SPEC_F32 = ConvSpec("k3_f32", 1, 32, 32, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, "float32")
MISSING = MSG_NEEDS_PACKAGE.format(package=PACKAGE, install=INSTALL_CUDNN)


def test_importing_it_loads_no_library() -> None:
    loaded = modules_after("import pytest_trtctx.backends.cudnn, pytest_trtctx.settings.plan_slots")
    assert "pytest_trtctx.backends.cudnn" in loaded
    assert [m for m in ("cudnn", "torch", "cuda.bindings.driver") if m in loaded] == []


def test_it_is_chosen_by_name_only_and_says_what_it_needs() -> None:
    if HAVE_FRONTEND:
        with pytest.raises(BackendUnavailable, match=r"^cudnn needs a GPU to run engines"):
            backends.select("cudnn", None)
        assert backends.select("cudnn", (9, 0)) == ("cudnn", "selected")
    else:
        with pytest.raises(BackendUnavailable) as raised:
            backends.select("cudnn", (9, 0))
        assert str(raised.value) == MISSING
    assert backends.select("auto", (9, 0))[0] != "cudnn"  # auto never picks it
    state = "installed" if HAVE_FRONTEND else f"NOT installed: {INSTALL_CUDNN}"
    assert backends.describe("cudnn") == f"{DESCRIPTION} ({PACKAGE} {state})"


def _layouts() -> list[dict[str, Any]]:
    """In a child: every matrix spec as the frontend lays it out (no lowering, no GPU)."""
    import cudnn

    from pytest_trtctx.backends.cudnn_graph import describe
    from pytest_trtctx.engines.matrix import load_matrix

    found = []
    for spec in load_matrix(ROOT / "engines" / "conv_matrix.toml"):
        graph, tensors = describe(cudnn, spec)
        conv = graph.nodes[0]
        found.append(
            {
                "spec": spec.to_dict(),
                "nodes": [str(n.node_type.name) for n in graph.nodes],
                "inferred": list(conv.outputs["Y"].get_dim()),
                "params": dict(conv.params),
                "x": [tensors["x"].get_dim(), tensors["x"].get_stride()],
                "w": [tensors["w"].get_dim(), tensors["w"].get_stride()],
                "y": [tensors["y"].get_dim(), tensors["y"].get_stride()],
                "y_type": str(tensors["y"].get_data_type()),
                "y_output": not tensors["y"].get_is_virtual(),
                "has_b": "b" in tensors,
            }
        )
    return found


@needs_frontend
def test_every_spec_is_laid_out_as_torch_computes_it() -> None:
    """The frontend's own shape inference of each conv gives the spec's output shape: padding,
    stride, dilation and groups reach cuDNN as torch's conv2d means them."""
    from pytest_trtctx.backends.cudnn_graph import IO_TYPES, strides

    layouts = in_child(_layouts)
    assert len(layouts) == 37
    for got in layouts:
        spec = ConvSpec.from_mapping(got["spec"], where="test")
        out = list(spec.output_shape)
        assert got["inferred"] == out, spec.name
        assert got["params"] == {
            "pre_padding": list(spec.padding),
            "post_padding": list(spec.padding),
            "stride": list(spec.stride),
            "dilation": list(spec.dilation),
        }
        assert got["x"] == [list(spec.input_shape), strides(spec.input_shape)]
        assert got["w"] == [list(spec.weight_shape), strides(spec.weight_shape)]  # C_in / groups
        assert got["y"] == [out, strides(spec.output_shape)]
        assert got["y_type"] == f"data_type.{IO_TYPES[spec.dtype]}" and got["y_output"]
        assert got["nodes"] == (["CONV_FPROP", "POINTWISE"] if spec.bias else ["CONV_FPROP"])
        assert got["has_b"] is spec.bias


def _engine(plans: list[dict[str, Any]]) -> Engine:
    return Engine(SPEC, 0, None, None, handle=object(), details={"plans": plans, "plan": None})


PLANS = [
    {"index": 0, "name": "eng0{}", "built": True, "error": None, "workspace": 0},
    {"index": 1, "name": "eng1{}", "built": False, "error": "cudnnGraphNotSupportedError: no"},
    {"index": 2, "name": "eng7{k=2}", "built": True, "error": None, "workspace": 64},
]


def test_a_slot_runs_the_plan_of_its_index_and_records_it() -> None:
    engine = _engine(PLANS)
    chosen, record, said = pick(engine, 2, 64)
    assert chosen.details["plan"] == 2 and chosen.details["view"] is True
    assert chosen.handle is engine.handle and engine.details["plan"] is None
    assert record == {"backend": "cudnn", "plan": 2, "plans": 3, "name": "eng7{k=2}"}
    assert said == []


def test_a_slot_past_the_plans_offered_or_declined_skips_with_why_and_its_record() -> None:
    with pytest.raises(pytest.skip.Exception) as past:
        pick(_engine(PLANS), 3, 64)
    assert str(past.value) == MSG_PLAN_NOT_OFFERED.format(count=3, spec="k3_f16", slot="plan3")
    assert isinstance(past.value, PlanSkipped)
    assert past.value.record == {"backend": "cudnn", "plan": 3, "plans": 3, "name": None}
    with pytest.raises(pytest.skip.Exception) as declined:
        pick(_engine(PLANS), 1, 64)
    why = "cudnnGraphNotSupportedError: no"
    assert str(declined.value) == MSG_PLAN_NOT_BUILT.format(
        slot=1, count=3, spec="k3_f16", name="eng1{}", why=why
    )
    assert isinstance(declined.value, PlanSkipped)
    assert declined.value.record == {
        "backend": "cudnn", "plan": 1, "plans": 3, "name": "eng1{}", "declined": why
    }  # fmt: skip


def test_the_last_slot_says_which_plans_no_slot_runs() -> None:
    _chosen, _record, said = pick(_engine(PLANS), 0, 1)
    assert said == [MSG_PLANS_CUT.format(count=3, spec="k3_f16", first=1, last=2, slots=1)]
    assert pick(_engine(PLANS), 0, 3)[2] == []


def test_without_slots_the_graph_runs_its_own_choice_and_one_plan_engines_pass_through() -> None:
    engine = _engine(PLANS)
    chosen, record, _said = pick(engine, None, 64)
    assert chosen is engine and record["plan"] is None and record["plans"] == 3
    single = Engine(SPEC, 0, None, None, details={})
    assert pick(single, None, 64) == (single, {}, [])
    assert with_plan(engine, 0).details["plans"] is engine.details["plans"]


MATRIX = "schema = 1\n" + MATRIX_A_F32 + MATRIX_B_F16

SUITE = marked_suite("cudnn")


def _suite(pytester: pytest.Pytester) -> None:
    (pytester.path / "engines").mkdir()
    (pytester.path / "engines" / "conv_matrix.toml").write_text(MATRIX)
    pytester.makepyfile(test_suite=SUITE)


def test_each_spec_gets_plan_slots_in_its_test_id(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    result = run_pytest(
        pytester,
        "--trtctx-order=torch-first",
        "--trtctx-backend=cudnn",
        "--trtctx-cudnn-plans=3",
        "--collect-only",
        "-q",
    )
    ids = [line for line in result.stdout.lines if line.startswith("test_suite.py::")]
    slots = [slot_id(i) for i in range(3)]
    expected = [
        f"test_suite.py::{test}[torch-first-{spec}-{slot}]"
        for test in ("test_conv", "test_marked")
        for spec in ("a_f32", "b_f16")
        for slot in slots
    ]
    assert ids == [*expected, "test_suite.py::test_own[torch-first]"]


def test_only_the_cudnn_backend_gets_slots(pytester: pytest.Pytester) -> None:
    _suite(pytester)
    result = run_pytest(pytester, "--trtctx-order=torch-first", "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if line.startswith("test_suite.py::")]
    assert ids == [
        "test_suite.py::test_conv[torch-first-a_f32]",
        "test_suite.py::test_conv[torch-first-b_f16]",
        *(f"test_suite.py::test_marked[torch-first-{s}-plan{i}]" for s in ("a_f32", "b_f16")
          for i in range(64)),
        "test_suite.py::test_own[torch-first]",
    ]  # fmt: skip


@pytest.mark.parametrize("value", ["0", "lots", "1025"])
def test_a_bad_slot_count_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    _suite(pytester)
    result = run_pytest(pytester, f"--trtctx-cudnn-plans={value}", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*option --trtctx-cudnn-plans: expected a number of cuDNN plan slots from 1 to 1024, "
         f"got *{value}*"]
    )  # fmt: skip


HIDE_FRONTEND = """
import pytest_trtctx.backends as backends

installed = backends.installed
backends.installed = lambda module: module != "cudnn" and installed(module)
"""


def test_without_the_frontend_every_slot_skips_with_the_install_line(
    pytester: pytest.Pytester,
) -> None:
    """The order applied (without a GPU: the recipe is stood in for), the frontend reported
    missing: each test skips, in its own process, with the line that installs it."""
    _suite(pytester)
    pytester.makepyfile(trtctx_hide_frontend=HIDE_FRONTEND)
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "-p",
        "trtctx_hide_frontend",
        "--trtctx-order=torch-first",
        "--trtctx-backend=cudnn",
        "--trtctx-cudnn-plans=2",
        "-rs",
        "-k",
        "test_conv",
    )
    result.assert_outcomes(skipped=4)
    result.stdout.re_match_lines(
        [re.escape("SKIPPED [4] test_suite.py:") + r"\d+: " + re.escape(MISSING)]
    )


ENGINE_RECORD = """
from pytest_trtctx.checks.outcomes import ENGINE_PROPERTY

def test_x(request):
    request.node.user_properties.append(
        (ENGINE_PROPERTY, {"backend": "cudnn", "plan": 1, "plans": 2, "name": "eng3"})
    )
"""


def test_the_report_keeps_the_engine_record(pytester: pytest.Pytester) -> None:
    from pytest_trtctx.records.report import ReportError, load

    pytester.makepyfile(test_engine=ENGINE_RECORD)
    run_pytest(pytester, "--trtctx-report=r.json").assert_outcomes(passed=1)
    report = load(pytester.path / "r.json")
    [record] = report["tests"]
    assert record["engine"] == {"backend": "cudnn", "plan": 1, "plans": 2, "name": "eng3"}
    data = json.loads((pytester.path / "r.json").read_text())
    data["tests"][0]["engine"] = [record["engine"]]
    (pytester.path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match="field 'engine' must be dict or null, got list"):
        load(pytester.path / "bad.json")


def test_an_unknown_backend_is_still_refused() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'cudnn9'"):
        backends.select("cudnn9", (9, 0))


# On a GPU, in a child process. ----------------------------------------------------------------


def _every_plan(
    build_in_created: bool, push_build_context: bool, spec: ConvSpec = SPEC
) -> dict[str, Any]:
    """Build ``spec``'s graph and plans (in a created context, or under torch), make the input with
    torch, run every plan (the build's context pushed or not): what each did."""
    import torch

    from pytest_trtctx.backends.cudnn import CudnnBackend
    from pytest_trtctx.checks.outputs import TOLERANCES, sentinel_fill, untouched
    from pytest_trtctx.cuda import driver
    from pytest_trtctx.scenarios.runtime import host_tensors

    driver.init()
    if build_in_created:
        driver.create_context(0)
    else:
        torch.empty(1, device="cuda")
    x_host, w, b = host_tensors(spec)
    backend = CudnnBackend(0, None)
    engine = backend.build(spec, w, b)
    x = x_host.to("cuda")  # torch's first call under driver-first: the primary made current
    ref = torch.nn.functional.conv2d(x_host.float(), w.float(), b.float(), padding=1)
    arithmetic = engine.details.get("arithmetic") or spec.dtype
    atol, rtol = TOLERANCES[arithmetic]
    outcomes = []
    for index in range(len(engine.details["plans"])):
        if not engine.details["plans"][index]["built"]:
            continue
        y = sentinel_fill(torch.empty(spec.output_shape, dtype=x.dtype, device="cuda"))
        torch.cuda.synchronize()
        if push_build_context:
            driver.push(engine.context)
        try:
            result = backend.execute(with_plan(engine, index), x, y)
        finally:
            if push_build_context:
                driver.pop()
        host = y.cpu().float()
        correct = untouched(y.cpu()) == 0 and torch.allclose(host, ref, atol=atol, rtol=rtol)
        worst = float((host - ref).abs().max())
        outcomes.append(
            {"ok": result.ok, "errors": result.errors, "correct": bool(correct), "worst": worst}
        )
    return {
        "built_primary": engine.built_in.is_primary,
        "arithmetic": arithmetic,
        "plans": len(engine.details["plans"]),
        "outcomes": outcomes,
    }


@requires_gpu
@needs_frontend
def test_every_plan_is_correct_when_torch_came_first() -> None:
    got = in_child(_every_plan, False, False)
    assert got["built_primary"] and got["plans"] >= 1 and got["outcomes"]
    assert all(o["ok"] and o["correct"] for o in got["outcomes"]), got["outcomes"]


@requires_gpu
@needs_frontend
def test_float32_plans_are_checked_in_tf32_and_each_is_within_it() -> None:
    """Every float32 plan writes an output within TF32's tolerance of the float32 reference
    (cuDNN may run float32 on tensor cores, as torch's own convolutions do by default)."""
    got = in_child(_every_plan, False, False, SPEC_F32)
    assert got["arithmetic"] == ARITHMETIC_FLOAT32 and got["outcomes"]
    assert all(o["ok"] and o["correct"] for o in got["outcomes"]), got["outcomes"]


@requires_gpu
@needs_frontend
def test_under_a_context_switch_no_plan_is_silently_wrong_and_the_push_fixes_all() -> None:
    """driver-first's shape: a plan either runs correctly or says what went wrong; none returns
    as if it ran and leaves a wrong or unwritten output. With the build's context pushed, every
    plan is correct."""
    switched = in_child(_every_plan, True, False)
    assert not switched["built_primary"] and switched["outcomes"]
    for outcome in switched["outcomes"]:
        assert (outcome["ok"] and outcome["correct"]) or (
            not outcome["ok"]
            and outcome["errors"]
            and outcome["errors"][0].startswith("cudnn plan")
        ), outcome
    pushed = in_child(_every_plan, True, True)
    assert all(o["ok"] and o["correct"] for o in pushed["outcomes"]), pushed["outcomes"]


def _built_with_a_limit(limit: int) -> list[dict[str, Any]]:
    import torch

    from pytest_trtctx.backends.cudnn import CudnnBackend
    from pytest_trtctx.scenarios.runtime import host_tensors

    torch.empty(1, device="cuda")
    _x, w, b = host_tensors(SPEC)
    return list(CudnnBackend(0, None, plans=limit).build(SPEC, w, b).details["plans"])


@requires_gpu
@needs_frontend
def test_only_the_plans_the_slots_run_are_built() -> None:
    """With N plan slots the first N plans are built; the rest are recorded as offered, not
    built, and say why (building a plan can compile a kernel at run time)."""
    from pytest_trtctx.backends.cudnn_graph import NOT_BUILT_PAST

    plans = in_child(_built_with_a_limit, 2)
    assert len(plans) > 2, plans  # the heuristics offer more than two for SPEC on every GPU seen
    assert all(p["built"] or p["error"] for p in plans[:2]), plans[:2]
    assert plans[0]["built"], plans[0]
    assert all(not p["built"] and p["error"] == f"{NOT_BUILT_PAST} 2" for p in plans[2:]), plans


def test_a_defect_is_declared_for_its_engine_spec_and_gpu_alone() -> None:
    from pytest_trtctx.backends.cudnn import DEFECTS, defect_of

    seen = DEFECTS[0]
    spec, engine = "k1s1d1g1_bf16_b8_1x1", "eng52"
    assert defect_of(spec, engine, seen.compute_capability) is seen
    assert defect_of(spec, "eng520", seen.compute_capability) is None
    assert defect_of("k1s1d1g1_bf16_b8_1x1_p0", engine, seen.compute_capability) is None
    assert defect_of(spec, engine, (8, 0)) is None


def test_a_plan_left_unbuilt_past_the_slots_is_not_called_declined() -> None:
    from pytest_trtctx.backends.cudnn_graph import NOT_BUILT_PAST
    from pytest_trtctx.backends.plans import PlanSkipped

    past = {"index": 1, "name": "eng9{}", "built": False, "error": f"{NOT_BUILT_PAST} 1"}
    with pytest.raises(PlanSkipped) as skipped:
        pick(_engine([PLANS[0], past]), 1, 2)
    assert "declined" not in skipped.value.record, skipped.value.record
    with pytest.raises(PlanSkipped) as declined:
        pick(_engine(PLANS), 1, 3)
    assert declined.value.record["declined"] == PLANS[1]["error"]
