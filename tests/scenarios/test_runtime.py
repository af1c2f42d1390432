"""The object behind the ``trtctx`` fixture (pytest_trtctx.scenarios.runtime): its data on the CPU,
and a
whole build-feed-run under two orders on the GPU, in a child process."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from pytest_trtctx.engines.spec import ConvSpec  # noqa: E402
from pytest_trtctx.scenarios.runtime import host_tensors  # noqa: E402

from ..conftest import in_child, requires_gpu, suite_report  # noqa: E402

F16 = ConvSpec("k3_f16", 2, 4, 8, 9, 11, (3, 3), (2, 1), (1, 0), (1, 2), 2, "float16")
F32 = ConvSpec("k1_f32", 1, 3, 5, 7, 7, (1, 1), (1, 1), (0, 0), (1, 1), 1, "float32", bias=False)


def test_host_tensors_are_deterministic_per_spec_and_rounded_to_its_dtype() -> None:
    x, w, b = host_tensors(F16)
    assert (x.shape, w.shape, b.shape) == (F16.input_shape, F16.weight_shape, (8,))
    assert x.dtype == w.dtype == b.dtype == torch.float16
    host_tensors.cache_clear()
    again = host_tensors(F16)
    assert all(torch.equal(a, c) for a, c in zip((x, w, b), again, strict=True))
    other = host_tensors(ConvSpec(**{**F16.__dict__, "name": "another"}))
    assert not torch.equal(x, other[0])  # seeded by the name
    assert host_tensors(F32)[2] is None


def test_reference_is_torchs_conv2d_in_float32() -> None:
    from pytest_trtctx.scenarios.runtime import Runtime

    x, w, b = host_tensors(F16)
    expected = torch.nn.functional.conv2d(
        x.float(), w.float(), b.float(), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2
    )
    got = Runtime.reference(Runtime.__new__(Runtime), F16)
    assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert got.shape == F16.output_shape


def _run_under(order: str, fix: bool) -> dict[str, Any]:
    """In a child: apply ``order``, build F16's engine, feed it torch tensors, run and check."""
    from pytest_trtctx.checks.outputs import CheckFailure, Outputs
    from pytest_trtctx.cuda.probe import machine
    from pytest_trtctx.scenarios import Registry
    from pytest_trtctx.scenarios.process import Process
    from pytest_trtctx.scenarios.runtime import Runtime

    state = Process().apply(Registry()[order], 0, len(machine().devices))
    runtime = Runtime(state, "cuda", None, Outputs())
    runtime.fix_context = fix
    try:
        y = runtime.check_conv(F16)
    except CheckFailure as exc:
        return {"signature": exc.signature, "diagnosis": exc.diagnosis}
    finally:
        runtime.close()
    return {"signature": None, "shape": tuple(y.shape), "outputs": list(runtime.outputs.current)}


@requires_gpu
def test_torch_first_runs_and_driver_first_fails_until_the_context_is_pushed() -> None:
    ok = in_child(_run_under, "torch-first", False)
    assert ok == {"signature": None, "shape": F16.output_shape, "outputs": ["k3_f16"]}
    broken = in_child(_run_under, "driver-first", False)
    assert broken["signature"] == "backend: CUDA_ERROR_INVALID_HANDLE"
    assert "made the primary context current" in broken["diagnosis"]
    assert in_child(_run_under, "driver-first", True)["signature"] is None


#: Three specs of the shipped suite: one per dtype, one strided, one batched.
THREE_SPECS = "k1s1d1g1_f32_b1_17x19 or k3s2d1g1_f16_b1_17x19 or k3s1d1g1_bf16_b8_17x19"


def _suite(tmp: Any, label: str, *extra: str) -> dict[str, Any]:
    """The shipped suite on three specs under two orders, with a report; the report."""
    return suite_report(tmp, label, "torch-first,driver-first", THREE_SPECS, *extra)


@requires_gpu
def test_prebuilt_engines_give_every_test_the_outcome_of_a_fresh_process(tmp_path: Any) -> None:
    """--trtctx-isolate=order --trtctx-prebuild: one process per order, every engine built right
    after the recipe. Each test's outcome, signature and output hashes are those of one fresh
    process per test, and every driver-first known failure is enforced (met fresh)."""
    from pytest_trtctx.records.cli import compare

    per_test = _suite(tmp_path, "per-test")
    prebuilt = _suite(tmp_path, "prebuilt", "--trtctx-isolate=order", "--trtctx-prebuild")
    diff = compare(per_test, prebuilt)
    assert not diff.regressed and diff.compared == diff.same_outcome == len(per_test["tests"])
    assert diff.hashes_compared > 0 and not diff.hash_changed
    known = [t["known_failure"] for t in prebuilt["tests"] if t["known_failure"]]
    assert known and {k["status"] for k in known} == {"reproduced"}
    assert all(t["fresh"] for t in prebuilt["tests"] if t["order"] and "test_conv[" in t["nodeid"])
