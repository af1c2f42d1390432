"""The device probe and the never-initialised proof."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_trtctx.cuda.probe import machine, versions

from ..conftest import MSG_TEST_TOUCHED_CUDA, requires_gpu, run_pytest


def test_probe_answers_either_way() -> None:
    info = machine()
    if info.has_gpu:
        assert info.devices and info.driver_api
        assert all(d.arch.startswith("sm_") for d in info.devices)
        assert "cc " in info.describe()
    else:
        assert info.why_no_gpu
        assert info.describe().startswith("no usable GPU: ")


def test_probe_never_initialises_cuda_here() -> None:
    code = (
        "from pytest_trtctx.cuda.probe import machine, cuda_untouched\n"
        "machine()\n"
        "ok, how = cuda_untouched()\n"
        "assert ok, how\n"
        "print('untouched:', how)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "untouched:" in out.stdout


@requires_gpu
def test_cuda_untouched_refuses_after_cuinit() -> None:
    """The proof's other half: once cuInit has run, it must refuse and say so. In a child, as is
    the clean case above: an xdist worker that runs these tests is not a fresh process (another
    test in it may have run an NVRTC compile or a refused TensorRT-RTX build, which call cuInit:
    docs/isolation.md)."""
    code = (
        "from pytest_trtctx.cuda.probe import cuda_untouched\n"
        "ok, how = cuda_untouched()\n"
        "assert ok, 'before cuInit: ' + how\n"
        "from cuda.bindings import driver\n"
        "(err,) = driver.cuInit(0)\n"
        "assert err == driver.CUresult.CUDA_SUCCESS, err\n"
        "print(*cuda_untouched(), sep='|')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ok, how = out.stdout.strip().split("|")
    assert ok == "False", how
    assert how.startswith("cuInit was already called in this process"), how


def test_versions_come_from_metadata() -> None:
    v = versions()
    assert v["python"] == sys.version.split()[0]
    assert "torch" not in sys.modules or "torch" in v


@requires_gpu
def test_the_guard_blames_the_test_that_initialised_cuda(pytester: pytest.Pytester) -> None:
    """tests/conftest.py's guard, on a suite where one test calls cuInit: that test errors with
    the message; the test after it (which found the process already touched) is not blamed; and
    the same test marked initialises_cuda is not blamed either."""
    root = Path(__file__).resolve().parents[2]
    pytester.makeconftest(
        f"import sys\nsys.path.insert(0, {str(root)!r})\n"
        "from tests.conftest import _leaves_cuda_untouched, pytest_configure  # noqa: F401\n"
    )
    suite = """
        import pytest

        {mark}
        def test_touches():
            from cuda.bindings import driver
            driver.cuInit(0)

        def test_after():
            pass
        """
    pytester.makepyfile(suite.format(mark=""))
    result = run_pytest(pytester)
    result.assert_outcomes(passed=2, errors=1)
    nodeid = "test_the_guard_blames_the_test_that_initialised_cuda.py::test_touches"
    how = "cuInit was already called in this process (cuCtxGetCurrent returned 0)"
    result.stdout.fnmatch_lines(["*" + MSG_TEST_TOUCHED_CUDA.format(nodeid=nodeid, how=how)])
    pytester.makepyfile(suite.format(mark='@pytest.mark.initialises_cuda("it calls cuInit")'))
    marked = run_pytest(pytester, "--strict-markers")
    marked.assert_outcomes(passed=2)
