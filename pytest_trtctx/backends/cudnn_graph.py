"""One convolution of the matrix as a cuDNN frontend graph, its execution plans, and one run.

The calls the cuDNN backend and the vendor probe share, so that what the probe measured is what
the backend runs. Every function takes the ``cudnn`` module (``nvidia-cudnn-frontend``) as its
first argument: nothing here imports it, or torch, at module level.

* :func:`describe` lays the spec out as a graph (NCHW tensors with explicit strides, a
  ``conv_fprop`` with torch's padding, stride and dilation, then a ``bias`` node where the spec
  has one; float32 accumulation), without lowering it: that part needs no GPU.
* :func:`build` lowers it in the context current on the calling thread (the handle is made there
  too), asks the heuristics (modes A and FALLBACK) for engine configurations and builds every one
  of them (``build_plans(build_plan_policy.ALL)``), or the first N where only N run (the plan
  slots). A plan the frontend declines to build is recorded with the frontend's words, not hidden.
* :func:`execute` runs one plan by index (or the graph's own choice) on a stream.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engines.spec import ConvSpec

#: The frontend's logger; a plan that declines to build is said there, and only there.
FRONTEND_LOGGER = "cudnn.pygraph"
#: How the frontend words a plan that declined to build under build_plan_policy.ALL.
_DECLINED = "declined at build time"
#: The heuristics asked for engine configurations, as the frontend's samples do.
HEURISTIC_MODES = ("A", "FALLBACK")
#: The spec's dtype as the frontend's data_type member.
IO_TYPES = {"float32": "FLOAT", "float16": "HALF", "bfloat16": "BFLOAT16"}
#: Why a plan offered past the ones asked for was not built (followed by how many were).
NOT_BUILT_PAST = "not built: only the first plans are, for the plan slots:"
#: The names of the graph's tensors, for messages and the variant pack.
TENSORS = ("x", "w", "b", "y")


@dataclass
class PlanRecord:
    """One execution plan the heuristics offered: its position, the engine's name, whether it
    was built, and why not (the frontend's words)."""

    index: int
    name: str
    built: bool = True
    error: str | None = None
    workspace: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "built": self.built,
            "error": self.error,
            "workspace": self.workspace,
        }


@dataclass
class ConvGraph:
    """A built graph, its handle and its plans."""

    graph: Any
    handle: Any
    tensors: dict[str, Any]
    plans: list[PlanRecord] = field(default_factory=list)

    @property
    def workspace(self) -> int:
        """The largest workspace any built plan needs (bytes)."""
        return max((p.workspace for p in self.plans if p.built), default=0)


def strides(dims: tuple[int, ...]) -> list[int]:
    """Row-major (NCHW-contiguous) strides of ``dims``."""
    out = [1] * len(dims)
    for i in range(len(dims) - 2, -1, -1):
        out[i] = out[i + 1] * dims[i + 1]
    return out


def describe(cudnn: Any, spec: ConvSpec, handle: Any = None) -> tuple[Any, dict[str, Any]]:
    """The spec as an unlowered graph and its tensors by name (:data:`TENSORS`)."""
    io = getattr(cudnn.data_type, IO_TYPES[spec.dtype])
    fp32 = cudnn.data_type.FLOAT
    graph = cudnn.pygraph(
        name=f"trtctx_{spec.name}",
        io_data_type=io,
        intermediate_data_type=fp32,
        compute_data_type=fp32,
        handle=handle,
    )
    x = graph.tensor(name="x", dim=list(spec.input_shape), stride=strides(spec.input_shape))
    w = graph.tensor(name="w", dim=list(spec.weight_shape), stride=strides(spec.weight_shape))
    tensors = {"x": x, "w": w}
    # Groups are the ratio of the input's channels to the filter's (C_in / groups), as in
    # cuDNN's graph API: there is no group count to set.
    y = graph.conv_fprop(
        image=x,
        weight=w,
        pre_padding=list(spec.padding),
        post_padding=list(spec.padding),
        stride=list(spec.stride),
        dilation=list(spec.dilation),
        compute_data_type=fp32,
        name="conv",
    )
    if spec.bias:
        bias_dims = (1, spec.out_channels, 1, 1)
        b = graph.tensor(name="b", dim=list(bias_dims), stride=strides(bias_dims))
        tensors["b"] = b
        y = graph.bias(name="bias", input=y, bias=b, compute_data_type=fp32)
    y.set_output(True).set_data_type(io)
    y.set_dim(list(spec.output_shape)).set_stride(strides(spec.output_shape))
    tensors["y"] = y
    return graph, tensors


@contextlib.contextmanager
def _declines() -> Iterator[dict[int, str]]:
    """The plans the frontend declined to build while inside, by index, in its words."""
    found: dict[int, str] = {}

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if _DECLINED in str(record.msg) and len(record.args or ()) >= 2:
                index, why = record.args[0], record.args[1]  # type: ignore[index]
                if isinstance(index, int):
                    found[index] = f"{type(why).__name__}: {why}"

    logger = logging.getLogger(FRONTEND_LOGGER)
    handler, level = Catch(logging.INFO), logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def build(cudnn: Any, spec: ConvSpec, limit: int | None = None) -> ConvGraph:
    """Handle, graph and the plans the heuristics offer, made in the current context: every one,
    or the first ``limit`` (the rest are recorded as offered and not built: building a plan can
    compile a kernel at run time, and a plan no test runs need not be paid for).

    Raises what the frontend raises: ``cudnn.cudnnGraphNotSupportedError`` where cuDNN has no
    engine for the spec, anything else where building failed."""
    handle = cudnn.create_handle()
    graph, tensors = describe(cudnn, spec, handle)
    graph.validate()
    graph.build_operation_graph()
    graph.create_execution_plans([getattr(cudnn.heur_mode, m) for m in HEURISTIC_MODES])
    graph.check_support()
    count = int(graph.get_execution_plan_count())
    wanted = count if limit is None or limit < 1 else min(limit, count)
    with _declines() as declined:
        if wanted == count:
            graph.build_plans(cudnn.build_plan_policy.ALL)
        else:
            for index in range(wanted):
                try:
                    graph.build_plan_at_index(index)
                except Exception as exc:  # the plan declined: its words, as build_plans logs them
                    lines = str(exc).strip().splitlines()
                    declined[index] = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    built = ConvGraph(graph, handle, tensors)
    for index in range(count):
        plan = PlanRecord(index, str(graph.get_plan_name_at_index(index)))
        if index >= wanted:
            plan.built, plan.error = False, f"{NOT_BUILT_PAST} {wanted}"
        elif index in declined:
            plan.built, plan.error = False, declined[index]
        else:
            try:
                plan.workspace = int(graph.get_workspace_size_plan_at_index(index))
            except Exception as exc:  # a plan whose size cannot be read cannot be run either
                plan.built, plan.error = False, f"{type(exc).__name__}: {exc}"
        built.plans.append(plan)
    return built


def execute(
    cudnn: Any,
    built: ConvGraph,
    plan: int | None,
    addresses: dict[str, int],
    workspace: int,
    stream: int,
) -> None:
    """Run plan ``plan`` (None: the graph's own choice, the first that built) on ``stream``, with
    the device ``addresses`` of :data:`TENSORS` (no ``b`` without bias) and ``workspace``.
    Raises what the frontend raises."""
    cudnn.set_stream(built.handle, stream)
    pack = {built.tensors[name]: address for name, address in addresses.items()}
    if plan is None:  # the first plan that built (build_plan_at_index selects the last it built)
        plan = next((p.index for p in built.plans if p.built), None)
    if plan is None:
        built.graph.execute(pack, workspace, handle=built.handle)
    else:
        built.graph.execute_plan_at_index(pack, workspace, index=plan, handle=built.handle)


def destroy(cudnn: Any, built: ConvGraph) -> None:
    """Destroy the graph's handle (in whatever context is current: cuDNN keeps its own)."""
    with contextlib.suppress(Exception):  # a handle of a destroyed context has nothing to free
        cudnn.destroy_handle(built.handle)
