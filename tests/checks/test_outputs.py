"""The output checks on CPU tensors: sentinel, zeros, NaN/Inf, reference, bitwise."""

from __future__ import annotations

import pytest

from pytest_trtctx.checks.outputs import (
    SENTINEL_BITS,
    TOLERANCES,
    CheckFailure,
    Outputs,
    bitwise_failures,
    first_difference,
    output_checks,
    sentinel_fill,
    sha256,
    untouched,
)

torch = pytest.importorskip("torch", reason="torch is not installed")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("dtype", DTYPES)
def test_sentinel_is_a_nan_that_arithmetic_does_not_make(dtype: torch.dtype) -> None:
    t = sentinel_fill(torch.empty(7, dtype=dtype))
    assert untouched(t) == 7
    assert torch.isnan(t.float()).all()
    made = torch.tensor([float("nan")], dtype=dtype)  # the NaN arithmetic produces
    assert untouched(made) == 0
    t[3] = 0.0
    assert untouched(t) == 6


def test_sentinel_refuses_integer_tensors() -> None:
    with pytest.raises(TypeError, match="sentinel needs a float32/float16/bfloat16 tensor"):
        sentinel_fill(torch.empty(3, dtype=torch.int32))


def _failed(results):
    return [r.signature for r in results if not r.ok]


def test_output_checks_order_and_signatures() -> None:
    assert _failed(output_checks("y", torch.ones(4), owned=False)) == []
    assert _failed(output_checks("y", torch.zeros(4), owned=False)) == ["nonzero: output all zeros"]
    bad = torch.tensor([1.0, float("inf")])
    assert _failed(output_checks("y", bad, owned=False)) == ["finite: output has NaN/Inf"]
    never = sentinel_fill(torch.empty(4))
    # A never-written output fails the sentinel check alone: the rest would repeat it.
    results = output_checks("y", never, owned=True)
    assert [r.check for r in results] == ["sentinel"]
    assert _failed(results) == ["sentinel: output not written"]


@pytest.mark.parametrize("dtype", ["float32", "tfloat32", "float16", "bfloat16"])
def test_reference_tolerance_per_dtype(dtype: str) -> None:
    atol, rtol = TOLERANCES[dtype]
    ref = torch.linspace(-2, 2, 101)
    within = ref + 0.5 * (atol + rtol * ref.abs())
    beyond = ref.clone()
    beyond[17] += 3 * (atol + rtol * abs(float(ref[17])))
    assert _failed(output_checks("y", within, owned=False, reference=ref, dtype=dtype)) == []
    results = output_checks("y", beyond, owned=False, reference=ref, dtype=dtype)
    assert _failed(results) == ["reference: output differs"]
    assert "first at flat index 17" in results[-1].detail


def test_float32_data_in_tf32_arithmetic_is_checked_at_tf32s_tolerance() -> None:
    """A float32 output off by TF32's rounding (cuDNN's tensor-core plans) fails float32's
    tolerance and passes TF32's, and the verdict says which arithmetic it was checked in."""
    ref = torch.linspace(-2, 2, 101)
    tf32 = ref + 2.2e-3  # the largest difference of a TF32 plan (docs/orders.md)
    assert _failed(output_checks("y", tf32, owned=False, reference=ref, dtype="float32")) == [
        "reference: output differs"
    ]
    results = output_checks("y", tf32, owned=False, reference=ref, dtype="tfloat32")
    assert _failed(results) == []
    assert results[-1].detail.endswith("(tfloat32 arithmetic)"), results[-1].detail
    plain = output_checks("y", ref, owned=False, reference=ref, dtype="float32")
    assert "arithmetic" not in plain[-1].detail


def test_first_difference_unravels_the_index() -> None:
    a = torch.zeros(2, 3, 4)
    b = a.clone()
    assert first_difference(a, b) is None
    b[1, 2, 3] = -0.0  # bitwise different, numerically equal
    assert first_difference(a, b) == ((1, 2, 3), 0.0, -0.0)
    assert sha256(a) != sha256(b)


def test_bitwise_failures_across_runs() -> None:
    out = Outputs()
    out.add("y", torch.ones(3))
    out.next_run()
    out.add("y", torch.ones(3))
    assert all(r.ok for r in bitwise_failures(out))
    out.next_run()
    out.add("z", torch.ones(3))
    assert _failed(bitwise_failures(out)) == ["bitwise: different outputs"]


def test_outputs_refuse_a_name_twice() -> None:
    out = Outputs()
    out.add("y", torch.ones(1))
    with pytest.raises(ValueError, match="an output named 'y' was already added"):
        out.add("y", torch.ones(1))


def test_check_failure_message_lists_every_check() -> None:
    results = output_checks("y", torch.zeros(3), owned=False)
    exc = CheckFailure(results, diagnosis="  likely cause: testing")
    assert exc.signature == "nonzero: output all zeros"
    text = str(exc)
    assert "[FAIL] nonzero: y: all 3 elements are zero" in text
    assert "[ok] finite: y: all finite" in text
    assert text.endswith("likely cause: testing")
    assert isinstance(exc, AssertionError)


def test_sentinel_bits_are_quiet_nans() -> None:
    assert SENTINEL_BITS["float32"] & 0x7FC00000 == 0x7FC00000
    assert SENTINEL_BITS["float16"] & 0x7E00 == 0x7E00
    assert SENTINEL_BITS["bfloat16"] & 0x7FC0 == 0x7FC0


@pytest.mark.parametrize(
    ("signature", "matches"),
    [
        ("backend: CUDA_ERROR_INVALID_HANDLE", True),
        (
            "backend: 1: [executionContext.cpp::enqueueV3::2424] Error Code 1: Cask "
            "(Cask convolution execution)",
            True,
        ),
        ("backend: [TRT] [E] 1: [convolutionRunner.cpp] invalid resource handle", True),
        ("backend: RuntimeError: Triton Error [CUDA]: invalid resource handle", True),
        ("backend: RuntimeError: cudnnSetStream failed", True),
        ("backend: RuntimeError: cudnnSetStreamX", False),
        ("backend: CUDA_ERROR_INVALID_HANDLE_EXTRA", False),
        ("backend: CUDA_ERROR_OUT_OF_MEMORY", False),
        ("sentinel: output not written", False),
    ],
)
def test_context_mismatch_family(signature: str, matches: bool) -> None:
    import re

    from pytest_trtctx.messages import CONTEXT_MISMATCH

    assert bool(re.search(CONTEXT_MISMATCH, signature)) is matches
