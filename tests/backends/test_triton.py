"""The Triton backend (pytest_trtctx.backends.triton) and its kernel (.triton_conv).

Without a GPU: what it imports, how it is selected and described, which specs it refuses, that
the launch arguments line up with the kernel's parameters, and the kernel's arithmetic in
Triton's interpreter (``TRITON_INTERPRET=1``, CPU tensors) against torch's CPU conv2d. On a GPU
(in a child process): the loaded kernel runs where it was loaded, and the two shapes of the
first probe: loaded under a created context then launched after torch's first call, and loaded
under torch then launched while a created context is pushed.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_trtctx import backends
from pytest_trtctx.backends import triton as backend
from pytest_trtctx.engines.spec import ConvSpec
from pytest_trtctx.errors import BackendUnavailable, SpecRefused
from pytest_trtctx.messages import CONTEXT_MISMATCH, INSTALL_TRITON, MSG_NEEDS_PACKAGE

from ..conftest import (
    MATRIX_A_F32,
    cpu_orders,
    gpu_skip_reason,
    in_child,
    modules_after,
    needs_package,
    requires_gpu,
    run_pytest,
)

ROOT = Path(__file__).resolve().parents[2]
KERNEL_SOURCE = ROOT / "pytest_trtctx" / "backends" / "triton_conv.py"
HAVE_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = needs_package("triton", "triton", INSTALL_TRITON)
MISSING = MSG_NEEDS_PACKAGE.format(package="triton", install=INSTALL_TRITON)

#: Small specs that cover what the matrix asks of the kernel: each dtype, groups (depthwise),
#: stride, padding and dilation per axis, bias or none; small enough for the interpreter.
SMALL = [
    ConvSpec("k3_f32", 1, 4, 6, 5, 7, (3, 3), (1, 1), (1, 1), (1, 1), 1, "float32"),
    ConvSpec("k3x1_s2_g3_f16", 2, 6, 6, 7, 6, (3, 1), (2, 1), (1, 0), (1, 1), 3, "float16", False),
    ConvSpec("k3_s1x2_d2x1_g4_bf16", 1, 4, 8, 9, 8, (3, 3), (1, 2), (2, 1), (2, 1), 4, "bfloat16"),
    ConvSpec("k5_dw_f32", 1, 3, 6, 6, 6, (5, 5), (2, 2), (2, 2), (1, 1), 3, "float32"),
    ConvSpec("k1_1x1_f16", 2, 8, 4, 1, 1, (1, 1), (1, 1), (0, 0), (1, 1), 1, "float16"),
]  # fmt: skip


def test_importing_it_loads_no_library() -> None:
    loaded = modules_after("import pytest_trtctx.backends.triton")
    assert "pytest_trtctx.backends.triton" in loaded
    assert [
        m for m in ("triton", "torch", "pytest_trtctx.backends.triton_conv") if m in loaded
    ] == []


def test_it_is_chosen_by_name_only_and_says_what_it_needs() -> None:
    if HAVE_TRITON:
        with pytest.raises(BackendUnavailable, match=r"^triton needs a GPU to run engines"):
            backends.select("triton", None)
        assert backends.select("triton", (9, 0)) == ("triton", "selected")
    else:
        with pytest.raises(BackendUnavailable) as raised:
            backends.select("triton", (9, 0))
        assert str(raised.value) == MISSING
    assert backends.select("auto", (9, 0))[0] != "triton"
    state = "installed" if HAVE_TRITON else f"NOT installed: {INSTALL_TRITON}"
    assert backends.describe("triton") == f"{backend.DESCRIPTION} (triton {state})"


def test_a_kernel_window_past_what_it_unrolls_is_refused_before_any_cuda_call() -> None:
    wide = ConvSpec("k17", 1, 2, 2, 40, 40, (17, 17), (1, 1), (8, 8), (1, 1), 1, "float32")
    why = backend.refusal(wide)
    assert why == "the Triton kernel unrolls the kernel window: at most 256 taps, k17 has 17x17"
    with pytest.raises(SpecRefused, match=re.escape(why)):
        backend.TritonBackend(0, None).build(wide, None, None)
    from pytest_trtctx.engines.matrix import load_matrix

    assert [
        s.name for s in load_matrix(ROOT / "engines" / "conv_matrix.toml") if backend.refusal(s)
    ] == []


def _parameters() -> tuple[list[str], list[str]]:
    """The kernel's parameters and which are compile-time constants, read from its source."""
    tree = ast.parse(KERNEL_SOURCE.read_text())
    [fn] = [
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "trtctx_conv2d_direct"
    ]
    names = [a.arg for a in fn.args.args]
    constexpr = [
        a.arg
        for a in fn.args.args
        if a.annotation is not None and "constexpr" in ast.unparse(a.annotation)
    ]
    return names, constexpr


@pytest.mark.parametrize("spec", SMALL, ids=lambda s: s.name)
def test_the_launch_arguments_line_up_with_the_kernels_parameters(spec: ConvSpec) -> None:
    names, constexpr = _parameters()
    shapes, constants = backend.shape_arguments(spec), backend.constants(spec)
    assert len(names) == 4 + len(shapes) + len(constants)
    assert names[-len(constants) :] == list(constants) == constexpr
    assert names[:4] == ["x_ptr", "w_ptr", "b_ptr", "y_ptr"]
    by_name = dict(zip(names[4:], shapes, strict=False))
    n, c, h, w = spec.input_shape
    p, q = spec.output_hw
    assert by_name["total"] == n * spec.out_channels * p * q
    assert (by_name["C"], by_name["H"], by_name["W"], by_name["P"], by_name["Q"]) == (c, h, w, p, q)
    assert (by_name["stride_h"], by_name["pad_w"], by_name["dil_h"]) == (
        spec.stride[0], spec.padding[1], spec.dilation[0],
    )  # fmt: skip
    assert constants["C_PER_GROUP"] * spec.groups == c and constants["HAS_BIAS"] is spec.bias
    assert (
        backend.grid(spec)[0] * backend.BLOCK
        >= by_name["total"]
        > (backend.grid(spec)[0] - 1) * backend.BLOCK
    )


def _interpreted(specs: list[ConvSpec]) -> list[dict[str, Any]]:
    """In a child: each spec through the kernel in Triton's interpreter, against torch's CPU
    conv2d on the same (rounded) values."""
    import os

    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernel is decorated: before its import
    import torch

    from pytest_trtctx.backends.triton_conv import kernel
    from pytest_trtctx.checks.outputs import TOLERANCES
    from pytest_trtctx.scenarios.runtime import host_tensors, reference

    found = []
    for spec in specs:
        x, w, b = host_tensors(spec)
        y = torch.empty(spec.output_shape, dtype=x.dtype)
        args = (x, w, w if b is None else b, y, *backend.shape_arguments(spec))
        kernel()[backend.grid(spec)](*args, **backend.constants(spec))
        ref = reference(spec)
        atol, rtol = TOLERANCES[spec.dtype]
        found.append(
            {
                "spec": spec.name,
                "close": bool(torch.allclose(y.float(), ref, atol=atol, rtol=rtol)),
                "max_abs_diff": float((y.float() - ref).abs().max()),
            }
        )
    return found


@needs_triton
def test_the_kernel_computes_torchs_conv2d_in_the_interpreter() -> None:
    from pytest_trtctx.engines.matrix import load_matrix

    tiny = [s for s in load_matrix(ROOT / "engines" / "conv_matrix.toml") if s.name in (
        "k3s1d1g1_f32_b1_1x1", "k3s2d1g1_bf16_b1_7x9_p0", "k3s1d1g1_f16_b1_7x9_nobias",
    )]  # fmt: skip
    got = in_child(_interpreted, [*SMALL, *tiny])
    assert [g["spec"] for g in got] == [s.name for s in [*SMALL, *tiny]]
    assert [g for g in got if not g["close"]] == []


SUITE = """
def test_conv(trtctx, trtctx_spec):
    trtctx.check_conv(trtctx_spec)
"""
MATRIX = "schema = 1\n" + MATRIX_A_F32


def test_its_tests_have_no_plan_slots_and_skip_with_why_without_a_gpu(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "engines").mkdir()
    (pytester.path / "engines" / "conv_matrix.toml").write_text(MATRIX)
    pytester.makepyfile(test_suite=SUITE)
    args = ("--trtctx-order=torch-first", "--trtctx-backend=triton")
    collected = run_pytest(pytester, *args, "--collect-only", "-q")
    assert "test_suite.py::test_conv[torch-first-a_f32]" in collected.stdout.lines
    if HAVE_TRITON and gpu_skip_reason() is None:
        return  # with a GPU the test runs (the GPU tests below); the ids are what is checked here
    result = run_pytest(pytester, *cpu_orders(pytester), *args, "-rs")
    result.assert_outcomes(skipped=1)
    why = MISSING if not HAVE_TRITON else "triton needs a GPU to run engines; there is none here"
    result.stdout.re_match_lines(
        [re.escape("SKIPPED [1] test_suite.py:") + r"\d+: " + re.escape(why)]
    )


# On a GPU, in a child process. ----------------------------------------------------------------

SPEC = SMALL[0]


def _loaded_then_launched(load_in: str, launch_in: str) -> dict[str, Any]:
    """Load the kernel (``load_in``: "created", a cuCtxCreate context, or "torch", the primary
    after torch's first call), make torch's inputs, launch it (``launch_in``: "current", whatever
    is current then; "pushed", a created context pushed around it; "own", the load's context
    pushed): what the launch raised and what the output holds."""
    import torch

    from pytest_trtctx.checks.outputs import sentinel_fill, untouched
    from pytest_trtctx.cuda import driver
    from pytest_trtctx.scenarios.runtime import host_tensors

    driver.init()
    if load_in == "created":
        driver.create_context(0)
    else:
        torch.empty(1, device="cuda")
    loaded_in = driver.current()
    x_host, w_host, b_host = host_tensors(SPEC)
    loaded = backend.load_kernel(SPEC)
    x, w, b = (t.to("cuda") for t in (x_host, w_host, b_host))  # torch's first call, if any
    y = sentinel_fill(torch.empty(SPEC.output_shape, device="cuda"))
    torch.cuda.synchronize()
    pushed = {"pushed": driver.create_context(0) if launch_in == "pushed" else None}
    if launch_in == "pushed":
        driver.pop()
        driver.push(pushed["pushed"])
    elif launch_in == "own":
        driver.push(loaded_in)
    raised = None
    try:
        stream = driver.create_stream()
        backend.launch_loaded(loaded, x, w, b, y, int(stream))
        driver.check("cuStreamSynchronize", driver.api().cuStreamSynchronize(stream))
    except Exception as exc:
        raised = f"{type(exc).__name__}: {exc}"
    finally:
        if launch_in in ("pushed", "own"):
            driver.pop()
    torch.cuda.synchronize()
    ref = torch.nn.functional.conv2d(x_host, w_host, b_host, padding=1)
    return {
        "raised": raised,
        "untouched": untouched(y.cpu()),
        "close": bool(torch.allclose(y.cpu(), ref, atol=1e-4, rtol=1e-4)),
    }


@requires_gpu
@needs_triton
def test_a_kernel_runs_in_the_context_it_was_loaded_in() -> None:
    assert in_child(_loaded_then_launched, "torch", "current") == {
        "raised": None,
        "untouched": 0,
        "close": True,
    }
    assert in_child(_loaded_then_launched, "created", "own")["close"]


@requires_gpu
@needs_triton
@pytest.mark.parametrize(("load_in", "launch_in"), [("created", "current"), ("torch", "pushed")])
def test_a_kernel_launched_in_another_context_fails_and_writes_nothing(
    load_in: str, launch_in: str
) -> None:
    """The first probe's two cases (one H200): Triton's 'invalid resource handle', nothing
    written, in the words the known-failure family matches."""
    got = in_child(_loaded_then_launched, load_in, launch_in)
    assert got["raised"] is not None and got["untouched"] == SPEC.batch * 6 * 5 * 7
    assert re.search(CONTEXT_MISMATCH, f"backend: {got['raised'].split(': ', 1)[1]}"), got
