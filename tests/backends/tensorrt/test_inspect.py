"""Where TensorRT-RTX runs, and what a plan holds (pytest_trtctx.backends.tensorrt.inspect).

Against the real TensorRT-RTX (no mocks): it builds and serializes engines without a GPU; running
them needs a GPU it supports.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

trt = pytest.importorskip(
    "tensorrt_rtx", reason="TensorRT-RTX is not installed: pip install tensorrt-rtx-cu13"
)
np = pytest.importorskip("numpy", reason="numpy is not installed")

from pytest_trtctx.backends import tensorrt as T  # noqa: E402

from ...conftest import requires_gpu  # noqa: E402
from .support import MODULE, SPECS  # noqa: E402


def test_inspect_plan_without_gpu_reads_the_plan_bytes(plans: dict[str, bytes]) -> None:
    plan = plans[SPECS[0].name]
    text = T.inspect_plan(MODULE, plan)
    assert "engine inspector not used" in text
    assert f"foreign node: {T.CONV_LAYER_NAME}" in text
    assert "convolution: corrltn={" in text


def test_inspect_plan_deserialize_says_why_the_inspector_is_unavailable(
    plans: dict[str, bytes],
) -> None:
    from pytest_trtctx.cuda.probe import machine

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

    from pytest_trtctx.cuda.probe import machine

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
