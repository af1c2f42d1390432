"""The worker side of isolation: a forked child that applies its order and runs its tests.

Like pytest-xdist's ``remote.py``, this module does not depend on the rest of the plugin's
machinery: it imports the order recipes, the device probe, the settings and nothing above them.
The child reports to the parent over a pipe in JSON lines, as plain dicts: ``start`` when an item
starts, ``phase`` when one of its phases starts, ``report`` with each serialized TestReport,
``done`` when the item is finished. Everything else (what a death or a hang means, what runs next)
is the parent's business (:mod:`.isolation`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

from . import orders, probe
from .config import settings_of
from .errors import OrderError

#: Imported in the pytest process before the first fork, so that each worker starts with them
#: loaded instead of importing torch itself (a fork costs milliseconds, importing torch seconds:
#: docs/isolation.md). Importing them does not initialise CUDA; probe.cuda_untouched() checks
#: that before every fork.
PRELOAD = ("torch", "cuda.bindings.driver", "cuda.bindings.nvrtc")

#: The exit status of a worker whose own machinery failed (not its tests): EX_SOFTWARE.
EXIT_INTERNAL = 70


def preload() -> list[str]:
    """Import :data:`PRELOAD` where installed; return what was imported."""
    loaded = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # not installed here: the worker that needs it will say so
            continue
        loaded.append(name)
    return loaded


def apply_order(config: pytest.Config, order: str) -> orders.OrderState:
    """Apply ``order``'s recipe in this process (a fresh worker, or the session at start)."""
    settings = settings_of(config)
    info = probe.machine()
    return orders.apply(
        order,
        settings.device.value,
        len(info.devices),
        "" if info.has_gpu else info.why_no_gpu,
        names=", ".join(d.name for d in info.devices) or "none",
    )


def order_state(config: pytest.Config, order: str) -> orders.OrderState:
    """The order state a test that asks for ``order`` runs under in this process: the one
    applied here, or (with ``--trtctx-isolate=none``, where none was yet) applied now.
    OrderError when this process runs another order or can no longer apply one."""
    state = orders.CURRENT
    if state is None:
        ok, why = probe.cuda_untouched(nvml_ok=True)
        if not ok:
            raise OrderError(
                f"order {order} cannot be applied: {why}. With --trtctx-isolate=none "
                "an order is applied once, before CUDA is used; select it with --trtctx-order, "
                "or isolate (--trtctx-isolate=order or test)."
            )
        return apply_order(config, order)
    if state.order != order:
        raise OrderError(f"this process runs order {state.order}, the test asks for {order}")
    return state


@dataclass
class Group:
    """Items that one worker runs, in collection order, after applying ``order`` (if any)."""

    order: str | None
    items: list[pytest.Item]


def group_message(order: str | None, indices: list[int]) -> bytes:
    """What the parent writes to a spare's control pipe: its order and item indices."""
    return json.dumps({"order": order, "items": indices}).encode() + b"\n"


class _Progress:
    """Registered in a worker: tells the parent when each phase of each item starts."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.index = -1

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.send({"event": "phase", "index": self.index, "phase": "setup"})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        self.send({"event": "phase", "index": self.index, "phase": "call"})

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        self.send({"event": "phase", "index": self.index, "phase": "teardown"})


def run_child(session: pytest.Session, wfd: int, dump: str, ctrl: int) -> None:
    """Body of a forked worker. Never returns.

    Every worker is forked as a spare: it does everything that does not depend on its tests
    first (and takes those page faults) while it waits for its group on ``ctrl``.
    """
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and kills us
        dump_file = open(dump, "w")  # noqa: SIM115 - lives as long as the process
        faulthandler.enable(file=dump_file, all_threads=True)
        faulthandler.register(signal.SIGUSR1, file=dump_file, all_threads=True)
        out = os.fdopen(wfd, "w", buffering=1)

        def send(message: dict[str, Any]) -> None:
            out.write(json.dumps(message) + "\n")
            out.flush()

        orders.reset_for_child()
        torch = sys.modules.get("torch")
        if torch is not None:  # CPU references in many workers at once: don't oversubscribe
            share = max(
                1, (os.cpu_count() or 1) // max(1, settings_of(session.config).workers.value)
            )
            torch.set_num_threads(share)
        progress = _Progress(send)
        session.config.pluginmanager.register(progress, "trtctx-progress")
        hook = session.config.hook
        group = _read_group(session, ctrl)
        if group is None:
            os._exit(0)  # retired without work
        if group.order is not None:
            apply_order(session.config, group.order)
        for index, item in enumerate(group.items):
            progress.index = index
            nextitem = group.items[index + 1] if index + 1 < len(group.items) else None
            send({"event": "start", "index": index})
            for report in runtestprotocol(item, log=False, nextitem=nextitem):
                data = hook.pytest_report_to_serializable(config=session.config, report=report)
                send({"event": "report", "index": index, "data": data})
            send({"event": "done", "index": index})
    except BaseException:  # anything here is the plugin's own failure: say it, then exit
        import traceback

        traceback.print_exc()
        code = EXIT_INTERNAL
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _read_group(session: pytest.Session, ctrl: int) -> Group | None:
    """In a spare: the group the parent sends (item indices and order), or None at EOF."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(ctrl, 1 << 16)
        if not chunk:
            return None
        data += chunk
    os.close(ctrl)
    message = json.loads(data)
    return Group(message["order"], [session.items[i] for i in message["items"]])
