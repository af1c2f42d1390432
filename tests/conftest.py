"""Shared helpers for the plugin's own tests."""

from __future__ import annotations

import pytest

from pytest_trtctx.names import MSG_NO_DRIVER
from pytest_trtctx.probe import machine


def gpu_skip_reason() -> str | None:
    """None when a CUDA GPU is usable here; else the precise reason (the probe runs in a child
    process, so asking never initialises CUDA in this one)."""
    info = machine()
    return None if info.has_gpu else MSG_NO_DRIVER.format(why=info.why_no_gpu)


requires_gpu = pytest.mark.skipif(gpu_skip_reason() is not None, reason=str(gpu_skip_reason()))


#: A pytest run under test that outlives this is a hang of its own: fail, never wait forever.
SUBPROCESS_TIMEOUT = 240


@pytest.fixture(autouse=True)
def _only_this_plugin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs under pytester load this plugin alone: no other installed plugin (the GPU machine
    has several) can change an outcome or import torch behind the test's back."""
    if "pytester" in request.fixturenames:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``runpytest_subprocess`` with this plugin and a timeout: a hang fails, never waits."""
    return pytester.runpytest_subprocess(
        "-p", "pytest_trtctx.plugin", *args, timeout=SUBPROCESS_TIMEOUT
    )
