"""The TensorRT module and its logger (pytest_trtctx.backends.tensorrt.logger).

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

from ...conftest import in_child, modules_after  # noqa: E402
from .support import MODULE  # noqa: E402


def test_importing_the_backend_imports_no_cuda_library() -> None:
    loaded = modules_after("import pytest_trtctx.backends.tensorrt, pytest_trtctx.engines.cache")
    assert "pytest_trtctx.backends.tensorrt.runner" in loaded
    assert [m for m in ("tensorrt", "tensorrt_rtx", "torch", "numpy", "cuda") if m in loaded] == []


def test_load_module_reports_the_import_error() -> None:
    with pytest.raises(BackendUnavailable, match=r"unknown TensorRT module 'tensorrt_nope'"):
        T.load_module("tensorrt_nope")
    assert T.load_module(MODULE) is trt


def _refused_build_errors() -> tuple[bool, list[str]]:
    """Builds a network the builder must refuse; returns (no plan, the logger's errors). Run in a
    child: on the GPU host this refused build calls cuInit (a valid one does not)."""
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
