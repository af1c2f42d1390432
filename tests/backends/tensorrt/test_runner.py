"""Running TensorRT engines (pytest_trtctx.backends.tensorrt.runner). TensorRT-RTX builds here,
but runs only on the compute capabilities it lists: the runner refuses the others before any
engine is deserialized, with the reason."""

from __future__ import annotations

from typing import Any

import pytest

trt = pytest.importorskip(
    "tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install tensorrt-rtx-cu13"
)
pytest.importorskip("numpy", reason="numpy is not installed")

from pytest_trtctx.backends import tensorrt as T  # noqa: E402
from pytest_trtctx.cuda.probe import machine  # noqa: E402
from pytest_trtctx.errors import NoCudaDriver  # noqa: E402

from ...conftest import gpu_skip_reason, in_child, requires_gpu  # noqa: E402
from .support import MODULE, SPECS, weights_for  # noqa: E402


def test_the_backend_says_what_it_is() -> None:
    backend = T.TensorRTBackend(MODULE, 0, None)
    assert backend.name == "tensorrt-rtx"
    assert backend.description.startswith(MODULE)


@pytest.mark.skipif(gpu_skip_reason() is None, reason="this machine has a CUDA driver")
def test_without_a_driver_build_says_there_is_none() -> None:
    weight, bias = weights_for(SPECS[0])
    with pytest.raises(NoCudaDriver):
        T.TensorRTBackend(MODULE, 0, None).build(SPECS[0], weight, bias)


def _build_on_this_gpu() -> dict[str, Any]:
    """In a child: build the first spec's engine with the runner; what happened."""
    from pytest_trtctx.errors import BackendUnavailable

    weight, bias = weights_for(SPECS[0])
    backend = T.TensorRTBackend(MODULE, 0, None)
    try:
        engine = backend.build(SPECS[0], weight, bias)
    except BackendUnavailable as exc:
        return {"refused": str(exc)}
    backend.close(engine)
    return {"refused": None}


@requires_gpu
def test_the_runner_refuses_exactly_where_can_run_here_does() -> None:
    cc = machine().devices[0].cc
    expected = T.can_run_here(MODULE, cc)
    got = in_child(_build_on_this_gpu)
    assert got == {"refused": expected}
