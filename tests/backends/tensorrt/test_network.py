"""The network under test and its weights (pytest_trtctx.backends.tensorrt.network).

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

from .support import SPECS, weights_for  # noqa: E402


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


def test_bf16_weights_round_to_nearest_even() -> None:
    values = np.array([1.0, 1.00390625, 1.01171875, -2.5, np.inf, np.nan], dtype=np.float32)
    bits = T.bf16_bits(values)
    # 1.0 = 0x3F80; 1+2^-8 is a tie -> even (0x3F80); 1+3*2^-8 is a tie -> even (0x3F82).
    assert [hex(b) for b in bits[:5]] == ["0x3f80", "0x3f80", "0x3f82", "0xc020", "0x7f80"]
    assert (int(bits[5]) & 0x7F80) == 0x7F80 and (int(bits[5]) & 0x7F) != 0  # still a NaN


def test_weights_digest_follows_the_engines_weights() -> None:
    spec = next(s for s in SPECS if s.dtype == "bfloat16")
    weight, bias = weights_for(spec)
    same = T.weights_digest(spec, weight, bias)
    assert same == T.weights_digest(spec, T.bf16_bits(weight), T.bf16_bits(bias))
    assert same != T.weights_digest(spec, weight * 2, bias)
