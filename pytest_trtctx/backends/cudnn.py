"""The cuDNN backend: each spec as a cuDNN frontend graph, each execution plan the heuristics
offer run as an engine of its own (TensorRT's tactic selection in miniature).

* ``build`` makes the cuDNN handle, the graph and every plan (``build_plans(ALL)``) in the
  context current on the calling thread (:mod:`.cudnn_graph`), and the weights and the largest
  workspace in device memory allocated there (:class:`.vendor.DeviceBuffers`). The engine it
  returns holds every plan (``details["plans"]``: index, engine name, built or why not); the
  plan an engine runs is ``details["plan"]``, set on a copy by :func:`.base.with_plan` (None:
  the graph's own choice, the first plan that built).
* ``execute`` runs that plan in whatever context is current then, on the caller's stream or a
  stream of its own, and keeps cuDNN's exact words for a failure
  (``cudnn::ops::ForkInternalStreams(handle, 4, streamA)`` failed, docs/orders.md).
* A spec cuDNN has no engine for (``cudnnGraphNotSupportedError`` while planning) is refused
  (:class:`~pytest_trtctx.errors.SpecRefused`) with cuDNN's words.

Engine cache: none on disk. The frontend serializes only a graph's selected plan, and a
deserialized graph executes through the backend's own plan list rather than the heuristics'
ranked one this backend indexes, so a cached plan would not be the engine under test. Within a
process a graph is built once per spec and context (``--trtctx-prebuild`` shares it between
the spec's plans).

``nvidia-cudnn-frontend`` (``pip install 'pytest-trtctx[cudnn]'``) is imported when an engine is
built, never at module level; the cuDNN library itself is the one torch brought.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cuda import driver
from ..errors import BackendUnavailable, SpecRefused
from ..messages import INSTALL_CUDNN, MSG_NEEDS_PACKAGE
from .base import Engine, ExecResult
from .cudnn_graph import ConvGraph
from .cudnn_graph import build as build_graph
from .cudnn_graph import destroy as destroy_graph
from .cudnn_graph import execute as execute_plan
from .vendor import DeviceBuffers, ensure_context, first_line, run_on_stream

if TYPE_CHECKING:
    from ..engines.spec import ConvSpec

NAME = "cudnn"
DESCRIPTION = (
    "cuDNN backend (a conv2d graph of the cuDNN frontend; every execution plan its heuristics "
    "offer runs as an engine of its own; not TensorRT)"
)
PACKAGE = "nvidia-cudnn-frontend"
#: The arithmetic a float32 plan is checked in (``checks.outputs.TOLERANCES``).
ARITHMETIC_FLOAT32 = "tfloat32"


@dataclass(frozen=True)
class EngineDefect:
    """A cuDNN engine a GPU showed to be wrong for a spec whatever the contexts: the tests that run
    it are known failures there (they pass while it reproduces, and fail the day a cuDNN upgrade
    fixes it: the upgrade changed what the engine computes)."""

    #: Regexes over the engine's name (``get_plan_name_at_index``) and the spec's.
    engine: str
    spec: str
    #: The GPUs it was seen on (their compute capability); elsewhere nothing is declared.
    compute_capability: tuple[int, int]
    #: A regex over the failure signature the tests give while it reproduces.
    signature: str
    reason: str

    def matches(self, spec: str, engine: str, capability: tuple[int, int]) -> bool:
        return (
            capability == self.compute_capability
            and re.search(self.spec, spec) is not None
            and re.search(self.engine, engine) is not None
        )


#: The engines cuDNN runs wrongly, as the GPU runs showed (docs/orders.md, "Vendor backends").
DEFECTS: tuple[EngineDefect, ...] = (
    EngineDefect(
        engine=r"^eng52$",
        spec=r"^k1s1d1g1_bf16_b8_1x1$",
        compute_capability=(9, 0),
        signature=r"^sentinel: output not written",
        reason=(
            "cuDNN 9.19.0's engine 52 (compiled at run time, tensor cores) returns success having "
            "written 71 of the 512 outputs of this 8x64x1x1 bfloat16 1x1 convolution, whatever "
            "the contexts"
        ),
    ),
)


def defect_of(spec: str, engine: str, capability: tuple[int, int]) -> EngineDefect | None:
    """The declared defect of ``engine`` running ``spec`` on a GPU of ``capability``, if any."""
    return next((d for d in DEFECTS if d.matches(spec, engine, capability)), None)


def installed() -> bool:
    """Whether the frontend (module ``cudnn``) can be imported here (asked without importing)."""
    try:
        return importlib.util.find_spec("cudnn") is not None
    except (ImportError, ValueError):
        return False


def load() -> Any:
    """The ``cudnn`` module; BackendUnavailable with the install line where it is missing."""
    try:
        import cudnn
    except ImportError as exc:
        why = MSG_NEEDS_PACKAGE.format(package=PACKAGE, install=INSTALL_CUDNN)
        raise BackendUnavailable(f"{why} ({exc})") from None
    return cudnn


def plan_label(engine: Engine) -> str:
    """What ran, for messages: ``cudnn plan 3 of 44 (eng1{...})`` or the graph's own choice."""
    index = engine.details.get("plan")
    plans = engine.details.get("plans") or []
    if index is None:
        return "cudnn graph (its first plan that built)"
    name = plans[index]["name"] if 0 <= index < len(plans) else "?"
    return f"cudnn plan {index} of {len(plans)} ({name})"


class CudnnBackend:
    name = NAME
    description = DESCRIPTION
    # lazy-stall deadlocked with it on a GPU: the poller's Python release never ran.
    launch_holds_gil = True

    def __init__(self, device: int, cache_dir: Path | None, plans: int | None = None) -> None:
        self.device = device
        self.cache_dir = cache_dir  # unused: see the module's doc on the engine cache
        #: How many of a spec's plans are built (the plan slots that run them); None: every one.
        self.plans = plans

    def build(self, spec: ConvSpec, weight: Any, bias: Any | None) -> Engine:
        cudnn = load()
        ensure_context(self.device)  # as cudnnCreate would on a thread with no context
        ctx = driver.current()
        built_in = driver.describe_current(self.device)
        try:
            built = build_graph(cudnn, spec, self.plans)
        except cudnn.cudnnGraphNotSupportedError as exc:
            raise SpecRefused(f"cuDNN has no engine for {spec.name}: {first_line(exc)}") from None
        buffers = DeviceBuffers(ctx)
        details: dict[str, Any] = {
            "buffers": buffers,
            "weight": buffers.upload(weight, spec.dtype),
            "bias": buffers.upload(bias, spec.dtype),
            "workspace": buffers.allocate(built.workspace),
            "plans": [plan.to_dict() for plan in built.plans],
            "plan": None,
            # What a plan's declared defects are matched on (DEFECTS).
            "compute_capability": driver.compute_capability(self.device),
        }
        if spec.dtype == "float32":
            # The heuristics offer TF32 tensor-core engines for float32 (torch runs its own
            # convolutions on them by default), and the frontend names a plan's engine and its
            # behaviour notes, not its numeric ones: every float32 plan is checked at TF32's
            # tolerance.
            details["arithmetic"] = ARITHMETIC_FLOAT32
        return Engine(spec, self.device, ctx, built_in, handle=built, details=details)

    def execute(self, engine: Engine, x: Any, y: Any, stream: int | None = None) -> ExecResult:
        """Run the engine's plan in the context current now; without ``stream`` on a stream of
        its own, synchronously."""
        cudnn = load()
        built: ConvGraph = engine.handle
        details = engine.details
        label = plan_label(engine)
        index = details.get("plan")
        if index is not None and not details["plans"][index]["built"]:
            why = f"{label} was not built: {details['plans'][index]['error']}"
            return ExecResult("not built", False, None, [why], "cudnn: plan not built")
        addresses = {"x": int(x.data_ptr()), "w": details["weight"], "y": int(y.data_ptr())}
        if engine.spec.bias:
            addresses["b"] = details["bias"]

        def launch(target: int) -> None:
            execute_plan(cudnn, built, index, addresses, details["workspace"], target)

        return run_on_stream(launch, stream, self.device, label)

    def close(self, engine: Engine) -> None:
        """Destroy the handle and free the weights and workspace in their context; a copy made
        for one plan (:func:`.base.with_plan`) owns nothing."""
        if engine.details.get("view"):
            return
        buffers = engine.details.get("buffers")
        if isinstance(buffers, DeviceBuffers):
            buffers.free()
        if isinstance(engine.handle, ConvGraph):
            destroy_graph(load(), engine.handle)
