"""Backend selection: which backend runs where, and why (real modules, no GPU needed)."""

from __future__ import annotations

import importlib.util

import pytest

from pytest_trtctx import backends
from pytest_trtctx.errors import BackendUnavailable, ConfigError

HAVE_RTX = importlib.util.find_spec("tensorrt_rtx") is not None
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
needs_rtx = pytest.mark.skipif(
    not HAVE_RTX, reason="TensorRT-RTX is not installed: pip install tensorrt-rtx-cu13"
)


def test_reference_backend_is_always_selectable() -> None:
    assert backends.select("cuda", None) == ("cuda", "selected")


def test_auto_without_a_gpu_falls_back_to_the_reference_and_says_why() -> None:
    name, why = backends.select("auto", None)
    assert name == "cuda"
    assert why == "auto: the CUDA reference backend, because tensorrt: no GPU; tensorrt_rtx: no GPU"


@needs_rtx
@pytest.mark.skipif(HAVE_TRT, reason="full TensorRT is installed here and would be chosen first")
def test_auto_on_an_h100_skips_rtx_with_the_compute_capability() -> None:
    name, why = backends.select("auto", (9, 0))
    assert name == "cuda"
    assert "cannot import tensorrt" in why
    assert "cannot run engines on this GPU, which has compute capability 9.0" in why


@needs_rtx
def test_explicit_rtx_on_an_h100_is_unavailable_with_the_reason() -> None:
    with pytest.raises(BackendUnavailable, match=r"compute capability 9\.0; supported compute"):
        backends.select("tensorrt_rtx", (9, 0))


@needs_rtx
@pytest.mark.skipif(HAVE_TRT, reason="full TensorRT is installed here and would be chosen first")
def test_auto_picks_rtx_where_it_can_run() -> None:
    assert backends.select("auto", (8, 6)) == ("tensorrt_rtx", "auto: tensorrt_rtx can run here")


def test_explicit_backend_without_a_gpu() -> None:
    with pytest.raises(BackendUnavailable, match="tensorrt_rtx needs a GPU to run engines"):
        backends.select("tensorrt_rtx", None)


def test_unknown_backend() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'onnx'"):
        backends.select("onnx", None)


def test_header_says_what_auto_means_and_what_is_installed(pytester: pytest.Pytester) -> None:
    from ..conftest import run_pytest

    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, "--trtctx-order=torch-first")
    installed = ", ".join(m for m, ok in (("tensorrt", HAVE_TRT), ("tensorrt_rtx", HAVE_RTX)) if ok)
    result.stdout.fnmatch_lines(
        [
            "trtctx: *backend auto (default): auto: full TensorRT if it imports, else "
            "TensorRT-RTX where it can run on this GPU, else the CUDA reference backend*"
            f"installed: {installed or 'neither tensorrt nor tensorrt_rtx'}"
        ]
    )
