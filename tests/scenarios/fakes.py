"""A backend that calls no driver, for the runtime's bookkeeping on CPU (as pytest-xdist tests
its scheduler with ``MockNode``): what the runtime asks of a backend, answered as told."""

from __future__ import annotations

from typing import Any

from pytest_trtctx.backends.base import Engine
from pytest_trtctx.engines.spec import ConvSpec

SPEC = ConvSpec("k3_f32", 1, 4, 8, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, "float32")


def engine_in(context: int, spec: ConvSpec = SPEC) -> Engine:
    """An engine of ``spec`` whose "context" is the handle value ``context``."""
    return Engine(spec, 0, context, None, details={})  # type: ignore[arg-type]


class FakeBackend:
    """Builds engines in "context" 7, counts them, and says what it is told of itself."""

    name = "fake"
    description = "a fake backend: no driver"

    def __init__(self, *, holds: bool = False) -> None:
        self.launch_holds_gil = holds
        self.built: list[Engine] = []

    def build(self, spec: ConvSpec, weight: Any, bias: Any | None) -> Engine:
        self.built.append(engine_in(7, spec))
        return self.built[-1]
