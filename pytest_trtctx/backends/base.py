"""What every engine backend provides: build an engine for a conv spec, execute it.

Loaders and runners stay apart (as in Polygraphy): :meth:`Backend.build` makes an engine in the
context current on the calling thread, :meth:`Backend.execute` runs it in whatever context is
current on the calling thread then. Neither switches contexts behind the caller's back, except
where the real library does so (the CUDA runtime makes the primary context current on a thread
that has none), because that switch is exactly what the init orders exercise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..cuda.driver import ContextInfo
    from ..engines.spec import ConvSpec


@dataclass
class Engine:
    """A built engine and where it was built."""

    spec: ConvSpec
    device: int
    context: Any  # the CUcontext current at build time (the engine's kernels live there)
    built_in: ContextInfo
    handle: Any = None  # backend specific
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExecResult:
    """What one execution reported, before any output is looked at."""

    returned: Any  # execute's own return value (True, or a CUresult name)
    ok: bool
    ran_in: ContextInfo | None
    errors: list[str] = field(default_factory=list)  # backend errors, exact text
    signature: str | None = None  # e.g. CUDA_ERROR_INVALID_HANDLE, or TensorRT's error text


class Backend(Protocol):
    name: str
    #: One line that says what this backend is (and, for the reference backend, what it is not).
    description: str
    #: Whether a launch keeps Python's GIL while the driver makes it wait (cuDNN frontend's
    #: execute): a scenario whose wait is released by a Python thread cannot run its engines.
    launch_holds_gil: bool

    def build(self, spec: ConvSpec, weight: Any, bias: Any | None) -> Engine: ...

    def execute(self, engine: Engine, x: Any, y: Any, stream: int | None = None) -> ExecResult:
        """Run once. Without ``stream``, on a stream of its own, synchronously; with one (the
        caller's: a foreign stream, a capturing stream), launched there and left to the caller
        to synchronise (a capture must not be synchronised)."""
        ...

    def close(self, engine: Engine) -> None: ...


def with_plan(engine: Engine, index: int) -> Engine:
    """A copy of ``engine`` that runs its plan ``index`` (a backend that builds several plans for
    one spec, as cuDNN's heuristics offer them). The copy shares the engine's handle and buffers
    and owns none of them (``details["view"]``): closing it frees nothing."""
    return replace(engine, details={**engine.details, "plan": index, "view": True})
