"""Tests of pytest_trtctx.backends.tensorrt against the real TensorRT-RTX (no GPU, no mocks).

TensorRT-RTX builds and serializes engines without a GPU, so every spec of the conv matrix is
built here. Running them needs a GPU it supports (not the H100, compute capability 9.0).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

trt = pytest.importorskip(
    "tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install tensorrt-rtx-cu13"
)
np = pytest.importorskip("numpy", reason="numpy is not installed")

from pytest_trtctx.backends import tensorrt as T  # noqa: E402
from pytest_trtctx.errors import BackendUnavailable  # noqa: E402
from pytest_trtctx.matrix import ConvSpec, default_matrix_path, load_matrix  # noqa: E402

from .conftest import in_child, requires_gpu  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPECS = load_matrix(default_matrix_path(ROOT))
MODULE = "tensorrt_rtx"


def weights_for(spec: ConvSpec, seed: int = 0) -> tuple[Any, Any | None]:
    """Deterministic float32 weights (converted to the spec's dtype by the backend)."""
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(spec.weight_shape).astype(np.float32)
    bias = rng.standard_normal(spec.out_channels).astype(np.float32) if spec.bias else None
    return weight, bias


@pytest.fixture(scope="module")
def plans() -> dict[str, bytes]:
    """Every spec's plan, built once for the module's tests."""
    built = {}
    for spec in SPECS:
        weight, bias = weights_for(spec)
        built[spec.name] = T.build_plan(MODULE, spec, weight, bias)
    return built


def test_importing_the_backend_imports_no_cuda_library() -> None:
    import subprocess

    code = (
        "import sys, pytest_trtctx.backends.tensorrt, pytest_trtctx.engine_cache;"
        "bad = [m for m in ('tensorrt', 'tensorrt_rtx', 'torch', 'numpy', 'cuda') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_load_module_reports_the_import_error() -> None:
    with pytest.raises(BackendUnavailable, match=r"unknown TensorRT module 'tensorrt_nope'"):
        T.load_module("tensorrt_nope")
    assert T.load_module(MODULE) is trt


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_plan_holds_the_specs_convolution(spec: ConvSpec, plans: dict[str, bytes]) -> None:
    plan = plans[spec.name]
    assert len(plan) > 0
    records = T.plan_conv_layers(plan)
    assert len(records) == 1, T.inspect_plan(MODULE, plan)
    assert f'name="{T.CONV_LAYER_NAME}"' in records[0]
    fields = T.parse_conv_record(records[0])
    assert fields["strides"] == spec.stride
    assert fields["dilation"] == spec.dilation
    assert fields["lpadding"] == spec.padding
    assert fields["rpadding"] == spec.padding
    assert fields["nbr_groups"] == (spec.groups,)


def test_network_holds_one_convolution_of_the_specs_dtype() -> None:
    for spec in SPECS:
        weight, bias = weights_for(spec)
        net = T.build_conv_network(trt, spec, weight, bias)
        assert net.network.num_layers == 1
        layer = net.network.get_layer(0)
        assert layer.type == trt.LayerType.CONVOLUTION
        out = layer.get_output(0)
        assert tuple(out.shape) == spec.output_shape, spec.name
        assert out.dtype == {"float32": trt.float32, "float16": trt.float16}.get(
            spec.dtype, trt.bfloat16
        )


def test_inspect_plan_without_gpu_reads_the_plan_bytes(plans: dict[str, bytes]) -> None:
    plan = plans[SPECS[0].name]
    text = T.inspect_plan(MODULE, plan)
    assert "engine inspector not used" in text
    assert f"foreign node: {T.CONV_LAYER_NAME}" in text
    assert "convolution: corrltn={" in text


def test_inspect_plan_deserialize_says_why_the_inspector_is_unavailable(
    plans: dict[str, bytes],
) -> None:
    from pytest_trtctx.probe import machine

    if machine().has_gpu:
        pytest.skip("this test checks the GPU-less path; a GPU is present here")
    text = T.inspect_plan(MODULE, plans[SPECS[0].name], deserialize=True)
    assert "deserialize_cuda_engine returned None" in text
    assert "cudaError 35" in text
    assert "convolution: corrltn={" in text


@requires_gpu
def test_the_runtime_agrees_with_can_run_here_on_this_gpu(
    plans: dict[str, bytes], tmp_path: Path
) -> None:
    """The skip reason is computed without touching CUDA; this checks it against the runtime itself.

    On a GPU that ``can_run_here`` refuses (the H100, 9.0), TensorRT-RTX must refuse to
    deserialize a real plan, naming the same compute capability; on one it accepts, the engine
    must deserialize. The day a TensorRT-RTX release runs on 9.0, this fails and says so. The
    deserialize runs in a child: it initialises CUDA, which this process must not.
    """
    import subprocess

    from pytest_trtctx.probe import machine

    cc = machine().devices[0].cc
    reason = T.can_run_here(MODULE, cc)
    plan_file = tmp_path / "plan.bin"
    plan_file.write_bytes(plans[SPECS[0].name])
    code = (
        "import sys, pathlib; from pytest_trtctx.backends import tensorrt as T; "
        f"print(T.inspect_plan({MODULE!r}, pathlib.Path(sys.argv[1]).read_bytes(), "
        "deserialize=True))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(plan_file)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    refused = "deserialize_cuda_engine returned None" in proc.stdout
    if reason is None:
        assert not refused, f"can_run_here accepts cc {cc} but the runtime refused:\n{proc.stdout}"
    else:
        assert refused, f"can_run_here refuses ({reason}) but the engine ran:\n{proc.stdout[:2000]}"
        assert f"compute capability {cc[0]}.{cc[1]}" in proc.stdout, proc.stdout


def test_bf16_weights_round_to_nearest_even() -> None:
    values = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf, np.nan], dtype=np.float32)
    bits = T._bf16_bits(values)
    # 1.0 = 0x3F80; 1+2^-8 is a tie -> even (0x3F80); 1+3*2^-8 is a tie -> even (0x3F82).
    assert [hex(b) for b in bits[:5]] == ["0x3f80", "0x3f80", "0x3f82", "0xc020", "0x7f80"]
    assert (int(bits[5]) & 0x7F80) == 0x7F80 and (int(bits[5]) & 0x7F) != 0  # still a NaN


def test_can_run_here_names_the_capability_and_the_supported_list() -> None:
    reason = T.can_run_here(MODULE, (9, 0))
    assert reason is not None
    assert "compute capability 9.0" in reason
    assert "8.0 8.6 8.9 12.0 12.1" in reason
    assert "above 12.0" in reason
    assert T.can_run_here(MODULE, (8, 6)) is None
    assert T.can_run_here(MODULE, (12, 0)) is None
    assert T.can_run_here(MODULE, (13, 0)) is None  # the runtime's ">12.0"
    assert T.can_run_here(MODULE, (7, 5)) is not None  # a build target, not runnable
    assert T.can_run_here("tensorrt_nope", (8, 6)) is not None


def _refused_build_errors() -> tuple[bool, list[str]]:
    """Builds a network the builder must refuse; returns (no plan, the logger's errors). Run in a
    child: on the GPU machine this refused build calls cuInit (a valid one does not)."""
    logger = T.CapturingLogger.create(trt)
    assert isinstance(logger, trt.ILogger)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    x = network.add_input("x", trt.float32, (1, 16, 8, 8))
    wrong = np.zeros(8 * 8 * 3 * 3, dtype=np.float32)  # weights for 8 input channels, not 16
    layer = network.add_convolution_nd(x, 8, (3, 3), trt.Weights(wrong))
    if layer is not None:
        network.mark_output(layer.get_output(0))
    plan = builder.build_serialized_network(network, builder.create_builder_config())
    return plan is None, logger.errors()


def test_logger_captures_an_invalid_network_and_never_raises() -> None:
    no_plan, errors = in_child(_refused_build_errors)
    assert no_plan
    assert any("Expected Weights count is 16 * 3*3 * 8 / 1 = 1152" in e for e in errors), errors
    logger = T.CapturingLogger.create(trt)
    logger.log("not a severity", object())  # garbage in: recorded or dropped, never raised
    logger.log(trt.ILogger.Severity.ERROR, "direct")
    assert logger.errors()[-1] == "direct"


@pytest.mark.initialises_cuda("a build TensorRT-RTX refuses calls cuInit on a GPU machine")
def test_build_plan_raises_with_the_loggers_errors() -> None:
    spec = SPECS[0]
    weight, bias = weights_for(spec)
    with pytest.raises(T.EngineBuildError) as info:
        T.build_plan(MODULE, spec, weight[: spec.out_channels // 2], bias)
    assert any("Expected Weights count" in e for e in info.value.errors)
    assert spec.name in str(info.value)


def test_build_for_a_chosen_target_and_unknown_one() -> None:
    spec = SPECS[0]
    weight, bias = weights_for(spec)
    assert T.build_plan(MODULE, spec, weight, bias, target=(8, 6))
    with pytest.raises(BackendUnavailable, match=r"cannot build for compute capability 9\.0"):
        T.build_plan(MODULE, spec, weight, bias, target=(9, 0))


def test_compatibility_variants_are_refused_with_the_reason() -> None:
    """TensorRT-RTX 1.7 has both knobs but honours neither here: detected, not pinned."""
    spec = SPECS[0]
    weight, bias = weights_for(spec)
    with pytest.raises(BackendUnavailable, match="hardware_compatibility_level") as info:
        T.build_plan(MODULE, spec, weight, bias, hardware_compatibility="AMPERE_PLUS")
    print(info.value)
    with pytest.raises(BackendUnavailable, match="version-compatible") as info:
        T.build_plan(MODULE, spec, weight, bias, version_compatible=True)
    print(info.value)
    with pytest.raises(BackendUnavailable, match="no hardware compatibility level 'NOPE'"):
        T.build_plan(MODULE, spec, weight, bias, hardware_compatibility="NOPE")


def test_weights_digest_follows_the_engines_weights() -> None:
    spec = next(s for s in SPECS if s.dtype == "bfloat16")
    weight, bias = weights_for(spec)
    same = T.weights_digest(spec, weight, bias)
    assert same == T.weights_digest(spec, T._bf16_bits(weight), T._bf16_bits(bias))
    assert same != T.weights_digest(spec, weight * 2, bias)
