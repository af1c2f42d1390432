"""A user's own engine under the plugin: the README's own-engine example, runnable.

``MyEngine`` stands in for a TensorRT engine the way TensorRT loads one: its kernel is compiled
(NVRTC) and loaded with ``cuModuleLoadData`` into the context current at load time, and belongs
to that context. Its launch error is ignored, as ``execute_v2``'s return value often is.

    pytest examples/test_own_engine.py --trtctx-order=torch-first,driver-first

Under ``driver-first`` (``import pycuda.autoinit`` made a context of its own current) the
``as-is`` case fails: torch's first CUDA call makes the primary context current, the launch fails,
the output is never written, and ``trtctx_nonzero`` says so with the context diagnosis. Pushing the
engine's context around its launch (``pushed``) is the fix.
"""

from __future__ import annotations

import ctypes

import pytest

torch = pytest.importorskip("torch")
cu = pytest.importorskip("cuda.bindings.driver")
nvrtc = pytest.importorskip("cuda.bindings.nvrtc")

SOURCE = rb"""
extern "C" __global__ void scale(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i] + 1.0f;
}
"""


def _ok(result: tuple) -> object:
    err, *values = result
    assert int(err) == 0, f"CUDA call failed: {err}"
    return values[0] if len(values) == 1 else values


class MyEngine:
    """Kernels loaded into the context current now, as a deserialized TensorRT engine's are."""

    def __init__(self) -> None:
        self.context = _ok(cu.cuCtxGetCurrent())
        device = _ok(cu.cuCtxGetDevice())
        attr = cu.CUdevice_attribute
        major = _ok(
            cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
        )
        minor = _ok(
            cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
        )
        program = _ok(nvrtc.nvrtcCreateProgram(SOURCE, b"scale.cu", 0, [], []))
        options = [f"--gpu-architecture=sm_{major}{minor}".encode()]
        _ok(nvrtc.nvrtcCompileProgram(program, len(options), options))
        cubin = b" " * _ok(nvrtc.nvrtcGetCUBINSize(program))
        _ok(nvrtc.nvrtcGetCUBIN(program, cubin))
        self.module = _ok(cu.cuModuleLoadData(cubin))
        self.kernel = _ok(cu.cuModuleGetFunction(self.module, b"scale"))

    def run(self, x: object, y: object, n: int, push: bool) -> None:
        if push:  # the fix: make the engine's context current around its work
            _ok(cu.cuCtxPushCurrent(self.context))
        args = [ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(y.data_ptr()), ctypes.c_int(n)]
        params = (ctypes.c_void_p * len(args))(*[ctypes.addressof(a) for a in args])
        grid = (n + 255) // 256
        cu.cuLaunchKernel(self.kernel, grid, 1, 1, 256, 1, 1, 0, 0, ctypes.addressof(params), 0)
        cu.cuCtxSynchronize()
        if push:
            _ok(cu.cuCtxPopCurrent())


@pytest.mark.trtctx_nonzero
@pytest.mark.parametrize("push", [False, True], ids=["as-is", "pushed"])
def test_my_engine(trtctx_order, trtctx_outputs, push):
    engine = MyEngine()  # in whatever context the order left current
    x = torch.arange(4096, dtype=torch.float32).to("cuda")  # torch's first CUDA call
    y = trtctx_outputs.empty((4096,), dtype=torch.float32, device="cuda")
    engine.run(x, y, 4096, push)
    trtctx_outputs.add("y", y)
