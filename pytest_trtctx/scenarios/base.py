"""What one scenario is: an init order or a context hazard, as one object.

A scenario says what it stands for (the field reports), what runs first in a process where CUDA
was never initialised (its recipe), where engines are built and how they are run under it, how
many devices it needs, what the suite expects of it (a known failure and its signature), its
likely cause and fix in words (the diagnosis quotes them) and the fix's code (what
``trtctx_fix_context`` applies). The registry (:mod:`pytest_trtctx.scenarios`) lists them; nothing
outside a scenario's own module branches on its name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..backends.base import Backend, Engine, ExecResult

#: A shipped scenario's source; a registered one's is the conftest or plugin that returned it.
SHIPPED_SOURCE = "pytest-trtctx"
ORDER: Literal["order"] = "order"
HAZARD: Literal["hazard"] = "hazard"


@dataclass
class State:
    """What a scenario's recipe did in this process; the ``trtctx`` fixture reads it."""

    scenario: Scenario
    device: int
    torch_device: int
    engine_device: int
    steps: list[str] = field(default_factory=list)
    engine_context: Any = None  # a context the recipe created for the engine, if any
    #: What a recipe keeps for its run (a foreign stream, ...): the scenario's own business.
    kept: dict[str, Any] = field(default_factory=dict)
    skip_reason: str | None = None
    error: str | None = None
    #: Tests that used this state so far. Only the first meets an init order as the recipe left
    #: it: once torch is initialised, a later torch allocation no longer switches contexts.
    uses: int = 0

    @property
    def order(self) -> str:
        """The scenario's name (``--trtctx-order`` selects scenarios by it)."""
        return self.scenario.name

    @property
    def applied(self) -> bool:
        """Whether the recipe ran to its end here (else the tests under it skip or fail)."""
        return self.skip_reason is None and self.error is None

    @property
    def every_test_fresh(self) -> bool:
        return self.scenario.every_test_fresh


@dataclass
class Run:
    """One execution of an engine, as a scenario's ``run`` or ``fix`` sees it.

    :meth:`go` executes the engine once on the calling thread, in whatever context is current
    there (pushed: the engine's own context around it), on ``stream`` or the backend's own."""

    state: State
    backend: Backend
    engine: Engine
    x: Any
    y: Any
    #: Where backends keep compiled kernels (a scenario that makes its own kernels uses it too).
    cache_dir: Path | None = None
    #: Told of a context the run destroyed, right after (the runtime marks every engine of it:
    #: ``Process.context_destroyed``); None where nobody keeps engines (a probe).
    context_lost: Callable[[Any], None] | None = None

    def go(self, *, pushed: bool = False, stream: int | None = None) -> ExecResult:
        with self.engine_context() if pushed else contextlib.nullcontext():
            return self.backend.execute(self.engine, self.x, self.y, stream)

    @contextlib.contextmanager
    def engine_context(self) -> Iterator[None]:
        """The engine's context pushed on this thread for the block (cuCtxPushCurrent/Pop)."""
        from ..cuda import driver

        driver.push(self.engine.context)
        try:
            yield
        finally:
            driver.pop()


@dataclass(frozen=True)
class KnownFailure:
    """What the suite expects of the engine under a scenario: a failure whose signature matches
    ``signature`` (a regex over failure signatures), for ``reason``. The suite's canaries declare
    it; a run where it stops reproducing fails."""

    signature: str
    reason: str
    #: Backends whose engines a GPU showed not to fail so under the scenario: the declaration
    #: does not hold a test planned on one of them.
    except_backends: tuple[str, ...] = ()


def same_thread(run: Run) -> ExecResult:
    """The engine run on the test's thread, in the context current there."""
    return run.go()


def pushed(run: Run) -> ExecResult:
    """The known fix of every context mismatch: the engine's context pushed around its run."""
    return run.go(pushed=True)


@contextlib.contextmanager
def where_current(state: State) -> Iterator[None]:
    """Engines are built in the context current on the calling thread (the recipe's)."""
    yield


@dataclass(frozen=True)
class Scenario:
    """One init order or context hazard (the module docstring says what each field is for)."""

    name: str
    kind: Literal["order", "hazard"]
    #: One line: what the scenario stands for and what to expect (the summary and README quote it).
    expected: str
    #: The field reports it reproduces (issue numbers, as ``owner/repo#N``).
    stands_for: tuple[str, ...]
    #: The recipe: the first CUDA work of a fresh process; records its steps in ``state.steps``.
    recipe: Callable[[State], None]
    #: In words, for the README's table: the first CUDA call, where engines live, the run.
    first_call: str
    built_in: str
    run_from: str
    #: How an engine runs under the scenario, and how it runs with ``trtctx_fix_context``.
    run: Callable[[Run], ExecResult] = same_thread
    fix: Callable[[Run], ExecResult] = pushed
    #: The context current while an engine is built (a context manager over the state).
    build_in: Callable[[State], contextlib.AbstractContextManager[None]] = where_current
    #: What the scenario does to a backend before its first build (None: nothing).
    prepare: Callable[[Backend, State], None] | None = None
    #: Why the scenario cannot run a backend's engines (None: it can): each test that would
    #: build one skips with it, before any engine is built (a prebuild builds none).
    refuses: Callable[[Backend], str | None] | None = None
    #: Environment set before cuInit (read once by the driver then).
    environment: Mapping[str, str] = field(default_factory=dict)
    #: Environment set before cuInit for speed alone, with --trtctx-fast-contexts (the tests of
    #: the process see it too) and where the environment does not set it already: never part of
    #: what the scenario reproduces; the recipe's steps say which value the driver reads.
    speed_environment: Mapping[str, str] = field(default_factory=dict)
    devices: int = 1
    known_failure: KnownFailure | None = None
    #: The likely cause and fix in words, when the scenario says it whatever the contexts were
    #: (hazards); None: the diagnosis reasons from the contexts compared (init orders).
    cause: str | None = None
    #: Whether every test meets the scenario as the first one does: a hazard in how the engine is
    #: run does not wear off once torch has initialised, as an init order's switch does.
    every_test_fresh: bool = False
    #: Where the scenario comes from: the plugin, or the conftest or plugin that registered it.
    source: str = SHIPPED_SOURCE

    @property
    def engine_device_offset(self) -> int:
        """How many devices after torch's the engine lives on (0, or 1 for two-GPU scenarios)."""
        return 1 if self.devices > 1 else 0
