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
from pytest_trtctx.engines.spec import ConvSpec  # noqa: E402
from pytest_trtctx.errors import BackendUnavailable  # noqa: E402

from .support import MODULE, ROOT, SPECS, weights_for  # noqa: E402


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


#: The three refusals, in a process of their own: TensorRT-RTX's unsupported
#: hardware-compatibility path once crashed the process running the tests (SIGSEGV in a second
#: read of the value, which the loader no longer makes; not seen in 45 runs of the test files
#: alone), and a library's crash there is not what this test checks: retried once, then failed.
VARIANTS = """
import json
from pytest_trtctx.backends import tensorrt as T
from pytest_trtctx.errors import BackendUnavailable
from tests.backends.tensorrt.support import MODULE, SPECS, weights_for

spec = SPECS[0]
weight, bias = weights_for(spec)
said = []
for options in ({"hardware_compatibility": "AMPERE_PLUS"}, {"version_compatible": True},
                {"hardware_compatibility": "NOPE"}):
    try:
        T.build_plan(MODULE, spec, weight, bias, **options)
        said.append("built")
    except BackendUnavailable as exc:
        said.append(str(exc))
print(json.dumps(said))
"""


def _variants() -> list[str]:
    """The refusals' messages; a crash of the library is retried once, then fails the test."""
    import json
    import subprocess
    import sys

    for attempt in (1, 2):
        done = subprocess.run(
            [sys.executable, "-c", VARIANTS], cwd=ROOT, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        if done.returncode >= 0 or attempt == 2:
            assert done.returncode == 0, done.stderr[-3000:]
            return list(json.loads(done.stdout.splitlines()[-1]))
        print(f"TensorRT-RTX crashed (signal {-done.returncode}); once more")
    raise AssertionError("unreachable")


def test_compatibility_variants_are_refused_with_the_reason() -> None:
    """TensorRT-RTX 1.7 has both knobs but honours neither here: detected, not pinned."""
    hardware, version, unknown = _variants()
    print(hardware, version, sep="\n")
    assert "hardware_compatibility_level" in hardware, hardware
    assert "version-compatible" in version, version
    assert "no hardware compatibility level 'NOPE'" in unknown, unknown
