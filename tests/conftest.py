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
