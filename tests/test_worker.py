"""The worker side of isolation (pytest_trtctx.worker), apart from a real fork (test_forking.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from pytest_trtctx import orders, worker
from pytest_trtctx.errors import OrderError


def test_the_group_message_is_one_json_line() -> None:
    blob = worker.group_message("driver-first", [3, 4])
    assert blob.endswith(b"\n") and blob.count(b"\n") == 1
    assert json.loads(blob) == {"order": "driver-first", "items": [3, 4]}


def test_preload_imports_what_is_installed_and_initialises_nothing() -> None:
    code = (
        "import sys; from pytest_trtctx import worker, probe; print(worker.preload());"
        "ok, how = probe.cuda_untouched(); print(ok, how)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, clean = done.stdout.splitlines()
    expected = [
        name for name in worker.PRELOAD if importlib.util.find_spec(name.split(".")[0]) is not None
    ]
    assert eval(loaded) == expected
    assert clean.startswith("True"), clean


def test_a_test_asking_for_another_order_than_the_one_applied_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    applied = orders.OrderState("trt-first", 0, torch_device=0, engine_device=0)
    monkeypatch.setattr(orders, "CURRENT", applied)
    assert worker.order_state(None, "trt-first") is applied  # type: ignore[arg-type]
    with pytest.raises(OrderError, match="this process runs order trt-first, the test asks for"):
        worker.order_state(None, "driver-first")  # type: ignore[arg-type]
