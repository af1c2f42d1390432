"""Which library call initialises CUDA: each step in one fresh process, then the proof.

After each step ``probe.cuda_untouched()`` says whether the process is still provably CUDA-clean
(what the isolation needs of the pytest process before it forks). The figures in
docs/results-h100.md ("Who initialises CUDA") come from this script on the GPU host.

Usage: python benchmarks/who_inits_cuda.py nvrtc|tensorrt_rtx   (one fresh process per library:
once one step has called cuInit, the later ones cannot be told apart)
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_trtctx.cuda.probe import cuda_untouched

ROOT = Path(__file__).resolve().parent.parent


def step(label: str, call: Callable[[], Any]) -> None:
    try:
        call()
        note = ""
    except Exception as exc:  # a refused build is one of the steps measured
        note = f" (raised {type(exc).__name__})"
    ok, how = cuda_untouched(nvml_ok=True)
    print(f"{label + note:<48} untouched={ok}  {how}", flush=True)


def nvrtc_steps() -> None:
    from cuda.bindings import nvrtc

    from pytest_trtctx.backends import kernels

    prog: list[Any] = []
    opts = [o.encode() for o in kernels.nvrtc_options("sm_80")]
    step("import cuda.bindings.nvrtc", lambda: None)
    step("nvrtcVersion", nvrtc.nvrtcVersion)
    step(
        "nvrtcCreateProgram",
        lambda: prog.extend(
            nvrtc.nvrtcCreateProgram(kernels.CONV_SOURCE.encode(), b"p.cu", 0, [], [])[1:]
        ),
    )
    step("nvrtcCompileProgram", lambda: nvrtc.nvrtcCompileProgram(prog[0], len(opts), opts))
    step("nvrtcGetCUBINSize", lambda: nvrtc.nvrtcGetCUBINSize(prog[0]))
    step(
        "kernels.compile_conv",
        lambda: kernels.compile_conv("sm_90", cache_dir=Path(tempfile.mkdtemp())),
    )


def rtx_steps() -> None:
    import numpy as np

    from pytest_trtctx.backends import tensorrt as T
    from pytest_trtctx.engines.matrix import default_matrix_path, load_matrix

    spec = load_matrix(default_matrix_path(ROOT))[0]
    weight = np.ones(spec.weight_shape, np.float32)
    step("import tensorrt_rtx", lambda: T.load_module("tensorrt_rtx"))
    trt = T.load_module("tensorrt_rtx")
    step("trt.Builder()", lambda: trt.Builder(T.CapturingLogger.create(trt)))
    step(
        "build_plan (valid, portable target)",
        lambda: T.build_plan("tensorrt_rtx", spec, weight, None),
    )
    step(
        "build_plan refused (wrong weight count)",
        lambda: T.build_plan("tensorrt_rtx", spec, weight[:1], None),
    )


def main() -> int:
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in ("nvrtc", "tensorrt_rtx"):
        print(__doc__, file=sys.stderr)
        return 2
    step("start", lambda: None)
    nvrtc_steps() if which == "nvrtc" else rtx_steps()
    return 0


if __name__ == "__main__":
    sys.exit(main())
