"""Building plans with TensorRT-RTX, without a GPU (pytest_trtctx.backends.tensorrt.loader).

Against the real TensorRT-RTX (no mocks): it builds and serializes engines without a GPU; running
them needs a GPU it supports.
"""

from __future__ import annotations

import pytest

trt = pytest.importorskip(
    "tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install tensorrt-rtx-cu13"
)
np = pytest.importorskip("numpy", reason="numpy is not installed")

from pytest_trtctx.backends import tensorrt as T  # noqa: E402
from pytest_trtctx.errors import BackendUnavailable  # noqa: E402
from pytest_trtctx.spec import ConvSpec  # noqa: E402

from .support import MODULE, SPECS, weights_for  # noqa: E402


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
