"""The object behind the ``trtctx`` fixture: build, feed and run engines under the applied order.

Every run goes through every check (backend error, execute's return value, sentinel, zeros,
NaN/Inf, a torch CPU reference with per-dtype tolerances); a failure raises :class:`CheckFailure`
with the diagnosis attached.
"""

from __future__ import annotations

import functools
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checks.outputs import CheckFailure, CheckResult, Outputs, output_checks
from .base import Run
from .diagnosis import diagnose
from .process import Process

if TYPE_CHECKING:
    from ..backends.base import Backend, Engine
    from ..engines.spec import ConvSpec
    from .base import State


def _dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


@functools.cache
def host_tensors(spec: ConvSpec) -> tuple[Any, Any, Any]:
    """Deterministic input, weight and bias for ``spec`` (CPU, rounded to spec.dtype).

    Seeded by the spec's name, so every backend, order and process sees the same numbers.
    """
    import torch

    gen = torch.Generator().manual_seed(zlib.crc32(spec.name.encode()))
    fan_in = spec.weight_shape[1] * spec.weight_shape[2] * spec.weight_shape[3]
    dt = _dtype(spec.dtype)
    x = torch.randn(spec.input_shape, generator=gen).to(dt)
    w = (torch.randn(spec.weight_shape, generator=gen) / fan_in**0.5).to(dt)
    b = (torch.randn(spec.out_channels, generator=gen) * 0.1).to(dt) if spec.bias else None
    return x, w, b


def reference(spec: ConvSpec) -> Any:
    """torch's CPU conv2d in float32 on :func:`host_tensors`' (rounded) values: what every
    backend's output is checked against."""
    import torch.nn.functional as F

    x, w, b = host_tensors(spec)
    return F.conv2d(
        x.float(),
        w.float(),
        None if b is None else b.float(),
        stride=spec.stride,
        padding=spec.padding,
        dilation=spec.dilation,
        groups=spec.groups,
    )


class Runtime:
    """Build and run engines under the order applied in this process."""

    def __init__(
        self,
        state: State,
        backend_name: str,
        cache_dir: Path | None,
        outputs: Outputs,
        process: Process | None = None,
    ) -> None:
        self.state = state
        self.order = state.order
        #: Where engines prebuilt after the recipe are found (this process's).
        self.process = process if process is not None else Process(state)
        self.backend_name = backend_name
        self.cache_dir = cache_dir
        self.outputs = outputs
        #: Push the engine's context around execution (set by the trtctx_fix_context fixture).
        self.fix_context = False
        self._backend: Backend | None = None
        self._engines: list[Engine] = []
        #: Every engine :meth:`build` handed out (a plan's is a copy: backends.base.with_plan).
        self._handed: list[Engine] = []
        #: Every message the backend reported while running (CUDA results, engine log errors).
        self.messages: list[str] = []
        #: The cuDNN plan slot the test runs, and how many slots its spec has (plan_slots.py).
        self.plan: int | None = None
        self.plan_slots = 0
        #: Which of its spec's plans the engine ran (index, how many, the engine's name), for
        #: the test's record; empty for a backend that builds one engine per spec.
        self.engine_record: dict[str, Any] = {}

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from ..backends import create

            device, slots = self.state.engine_device, self.plan_slots or None
            self._backend = create(self.backend_name, device, self.cache_dir, slots)
            if self.state.scenario.prepare is not None:
                self.state.scenario.prepare(self._backend, self.state)
        return self._backend

    # Data -----------------------------------------------------------------------------------
    def host_tensors(self, spec: ConvSpec) -> tuple[Any, Any, Any]:
        """Deterministic input, weight and bias for ``spec`` (CPU, rounded to spec.dtype)."""
        return host_tensors(spec)

    def reference(self, spec: ConvSpec) -> Any:
        """torch's CPU conv2d in float32 on the same (rounded) values."""
        return reference(spec)

    # Engines --------------------------------------------------------------------------------
    def build(self, spec: ConvSpec) -> Engine:
        """An engine for ``spec``: the one built right after the order's recipe where engines are
        prebuilt (``--trtctx-prebuild``), else one built now (:meth:`build_now`); of a backend
        that builds several plans per spec, the plan of the test's slot (``backends.plans.pick``).
        A spec the backend refuses skips the test with the backend's reason."""
        import pytest

        from ..backends.plans import pick
        from ..errors import SpecRefused

        refused = self.refused()
        if refused is not None:
            pytest.skip(refused)
        engine = self.process.prebuilt.get((self.backend_name, spec.name))
        # An engine whose context an earlier run destroyed is never launched again, fixed or not:
        # its handles point into freed driver state, which a context made since may reuse, and
        # such a launch crashed the process (SIGSEGV in the reference backend's cuLaunchKernel
        # and in cuDNN's cudnnSetStream, on a GPU: docs/orders.md). The run builds its own; a
        # plain run of context-destroyed then destroys that one's context right before it runs.
        if engine is not None and engine.details.get("context_destroyed"):
            engine = None
        if engine is None:
            try:
                engine = self.build_now(spec)
            except SpecRefused as exc:
                pytest.skip(str(exc))
        engine, self.engine_record, said = pick(engine, self.plan, self.plan_slots)
        self.messages.extend(said)
        self._handed.append(engine)
        return engine

    def refused(self) -> str | None:
        """Why the scenario cannot run this backend's engines (``Scenario.refuses``), or None."""
        refuses = self.state.scenario.refuses
        return None if refuses is None else refuses(self.backend)

    def build_now(self, spec: ConvSpec) -> Engine:
        """Build an engine for ``spec`` in the context the scenario builds engines in (the one
        current on this thread, unless the scenario says otherwise: ``Scenario.build_in``)."""
        _x, w, b = self.host_tensors(spec)
        with self.state.scenario.build_in(self.state):
            engine = self.backend.build(spec, w, b)
        self._engines.append(engine)
        return engine

    def context_lost(self, context: Any) -> None:
        """A run just destroyed ``context``: every engine of it, prebuilt or this test's (a
        plan's copy included), is marked so."""
        self.process.context_destroyed(context, (*self._engines, *self._handed))

    def make_input(self, spec: ConvSpec) -> Any:
        """The input as a torch CUDA tensor: torch's own allocation (it may switch contexts)."""
        x, _w, _b = self.host_tensors(spec)
        return x.to(f"cuda:{self.state.engine_device}")

    def run(self, engine: Engine, x: Any, name: str | None = None) -> Any:
        """Execute ``engine`` on ``x`` as the order prescribes, check everything, return y."""
        __tracebackhide__ = True  # a failure shows the test's line and the verdict
        import torch

        spec = engine.spec
        y = self.outputs.empty(spec.output_shape, _dtype(spec.dtype), f"cuda:{engine.device}")
        torch.cuda.synchronize(y.device)
        fixed, scenario = self.fix_context, self.state.scenario
        run = Run(self.state, self.backend, engine, x, y, self.cache_dir, self.context_lost)
        result = scenario.fix(run) if fixed else scenario.run(run)
        self.messages.extend(m for m in result.errors if m not in self.messages)
        self.outputs.add(name or spec.name, y)
        results = [
            CheckResult(
                "backend",
                not result.errors,
                " | ".join(result.errors) or "no error reported",
                f"backend: {result.signature}" if result.errors else None,
            ),
            CheckResult(
                "execute",
                result.ok,
                f"returned {result.returned!r}",
                None if result.ok else f"execute: returned {result.returned}",
            ),
        ]
        # An engine that computes its dtype in another arithmetic says so (cuDNN's float32 plans:
        # TF32); it is checked at that arithmetic's tolerance.
        arithmetic = engine.details.get("arithmetic") or spec.dtype
        results += output_checks(
            name or spec.name, y, owned=True, reference=self.reference(spec), dtype=arithmetic
        )
        if not all(r.ok for r in results):
            raise CheckFailure(results, diagnose(self.state, engine, result, fixed))
        return y

    def check_conv(self, spec: ConvSpec) -> Any:
        """Build, feed and run ``spec``'s engine: the regression suite's one step."""
        __tracebackhide__ = True  # a failure shows the test's line and the verdict
        engine = self.build(spec)
        x = self.make_input(spec)
        return self.run(engine, x)

    def close(self) -> None:
        engines, self._engines = self._engines, []
        for engine in engines:  # a destroyed context took its engine's memory with it
            if self._backend is not None and not engine.details.get("context_destroyed"):
                self._backend.close(engine)


def choose_backend(planned: str, state: State) -> tuple[str, str]:
    """The backend that runs here for a test that plans ``planned``, and why;
    BackendUnavailable when an explicit one cannot run on the engine's device."""
    from .. import backends
    from ..cuda import probe

    devices = probe.machine().devices
    engine_cc = next((d.cc for d in devices if d.index == state.engine_device), None)
    return backends.select(planned, engine_cc)


def prebuild(
    process: Process,
    wanted: list[tuple[str, ConvSpec]],
    cache_dir: Path | None,
    plan_slots: int = 0,
) -> int:
    """Build the engine of every (backend, spec) in ``wanted`` now, in the context the scenario's
    recipe left current, before torch's first CUDA call of any test: each engine meets the
    scenario as a fresh process's would, at the cost of one process for it. Returns how many were
    built; one that fails to build is left to its test, which builds it and fails as it would."""
    state = process.state
    if state is None or not state.applied:
        return 0
    by_backend: dict[str, Runtime] = {}
    built = 0
    for backend, spec in wanted:
        if (backend, spec.name) in process.prebuilt:
            continue
        runtime = by_backend.get(backend)
        if runtime is None:
            runtime = by_backend[backend] = Runtime(state, backend, cache_dir, Outputs(), process)
            runtime.plan_slots = plan_slots  # the plans a test runs are the ones built
        try:
            if runtime.refused() is not None:
                continue  # its tests skip saying why, before they would build
            process.prebuilt[(backend, spec.name)] = runtime.build_now(spec)
        except Exception:  # the test builds it again and reports the failure itself
            continue
        built += 1
    return built
