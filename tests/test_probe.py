"""The device probe and the never-initialised proof."""

from __future__ import annotations

import subprocess
import sys

from pytest_trtctx.probe import cuda_untouched, machine, versions


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
        "from pytest_trtctx.probe import machine, cuda_untouched\n"
        "machine()\n"
        "ok, how = cuda_untouched()\n"
        "assert ok, how\n"
        "print('untouched:', how)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "untouched:" in out.stdout


def test_cuda_untouched_in_a_fresh_process() -> None:
    ok, how = cuda_untouched()
    assert ok, how


def test_versions_come_from_metadata() -> None:
    v = versions()
    assert v["python"] == sys.version.split()[0]
    assert "torch" not in sys.modules or "torch" in v
