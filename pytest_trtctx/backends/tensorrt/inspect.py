"""Where a TensorRT module can run engines, and what a serialized plan holds (read from its
bytes, or through the engine inspector where deserializing is allowed)."""

from __future__ import annotations

import re
from typing import Any

from ...errors import BackendUnavailable
from .logger import CapturingLogger, load_module, module_version

__all__ = [
    "RTX_MIN_RUNNABLE_CC",
    "RTX_RUNS_ABOVE_CC",
    "can_run_here",
    "inspect_plan",
    "parse_conv_record",
    "plan_conv_layers",
    "runnable_compute_capabilities",
]


#: TensorRT-RTX builds for ``ComputeCapability.SM75`` but its runtime refuses anything below 8.0
#: (its library says "need compute capability 80 or above"; its run-time refusal lists
#: "8.0 8.6 8.9 12.0 12.1 >12.0": docs/tensorrt.md).
RTX_MIN_RUNNABLE_CC = (8, 0)


#: The "``>12.0``" of that list: every compute capability above 12.0 is accepted too. Only the
#: library's refusal says so; its Python API exposes no such value.
RTX_RUNS_ABOVE_CC = (12, 0)


def enum_targets(trt: Any) -> list[tuple[int, int]]:
    """(major, minor) of every ``ComputeCapability.SM<digits>`` member (last digit = minor)."""
    enum = getattr(trt, "ComputeCapability", None)
    if enum is None:
        return []
    found = []
    for name in getattr(enum, "__members__", {}):
        m = re.fullmatch(r"SM(\d+)(\d)", name)
        if m:
            found.append((int(m.group(1)), int(m.group(2))))
    return sorted(found)


def runnable_compute_capabilities(trt: Any) -> list[tuple[int, int]]:
    """TensorRT-RTX: the compute capabilities its runtime runs engines on (listed ones).

    Taken from the library's own ``ComputeCapability`` build targets, less those below
    :data:`RTX_MIN_RUNNABLE_CC` (the runtime refuses 7.5 although it can build for it). Anything
    above :data:`RTX_RUNS_ABOVE_CC` runs too (not listed: it is open-ended).
    """
    return [cc for cc in enum_targets(trt) if cc >= RTX_MIN_RUNNABLE_CC]


def can_run_here(module_name: str, compute_capability: tuple[int, int]) -> str | None:
    """None when ``module_name`` can execute engines on a GPU of ``compute_capability``, else why.

    A GPU-less check, so that a test can skip with the precise reason before touching CUDA. Full
    TensorRT builds on and for the GPU it runs on, so it is only refused when it cannot be
    imported.
    """
    try:
        trt = load_module(module_name)
    except BackendUnavailable as exc:
        return str(exc)
    if module_name != "tensorrt_rtx":
        return None
    listed = runnable_compute_capabilities(trt)
    cc = tuple(compute_capability)
    if cc in listed or cc > RTX_RUNS_ABOVE_CC:
        return None
    shown = " ".join(f"{a}.{b}" for a, b in listed)
    above = f"{RTX_RUNS_ABOVE_CC[0]}.{RTX_RUNS_ABOVE_CC[1]}"
    return (
        f"TensorRT-RTX {module_version(trt)} cannot run engines on this GPU, which has compute "
        f"capability {cc[0]}.{cc[1]}; supported compute capabilities: {shown} and anything "
        f"above {above} (from tensorrt_rtx.ComputeCapability, from "
        f"{RTX_MIN_RUNNABLE_CC[0]}.{RTX_MIN_RUNNABLE_CC[1]} up, and the runtime's '>{above}')"
    )


_FOREIGN_NODE_RE = re.compile(rb"\{ForeignNode\[([^\]\x00]*)\]\}")


_CONV_OP_RE = re.compile(rb'(corrltn|conv\w*)=\{ name="([^"\x00]*)"[^\x00\n]*')


def plan_conv_layers(plan: bytes) -> list[str]:
    """Convolution records found in a TensorRT-RTX plan's bytes, without deserializing it.

    A TensorRT-RTX plan embeds its Myelin graph as text; one convolution shows up as a record
    ``corrltn={ name="trtctx_conv2d" ... strides={ 1 1 } dilation={ 1 1 } ... nbr_groups=1 ...}``
    (seen in every plan of the conv matrix). This is a heuristic over an undocumented format:
    good enough to tell that the plan holds our convolution, not a parser.
    """
    return [m.group(0).decode("ascii", "replace") for m in _CONV_OP_RE.finditer(plan)]


_RECORD_FIELD_RE = re.compile(
    r"\b(lpadding|rpadding|strides|dilation)=\{([\d ]*)\}|\b(nbr_groups)=(\d+)"
)


def parse_conv_record(record: str) -> dict[str, tuple[int, ...]]:
    """The geometry of one :func:`plan_conv_layers` record: lpadding, rpadding, strides,
    dilation (per spatial axis, H first) and nbr_groups (a 1-tuple).

    Lets a test compare the plan against the spec. Not the bias: Myelin splits the bias of some
    grouped convolutions into a separate op, and the record then says ``bias=false``.
    """
    fields: dict[str, tuple[int, ...]] = {}
    for m in _RECORD_FIELD_RE.finditer(record):
        if m.group(1):
            fields[m.group(1)] = tuple(int(v) for v in m.group(2).split())
        else:
            fields[m.group(3)] = (int(m.group(4)),)
    return fields


def _plan_foreign_nodes(plan: bytes) -> list[str]:
    return [m.group(1).decode("ascii", "replace") for m in _FOREIGN_NODE_RE.finditer(plan)]


def inspect_plan(module_name: str, plan: bytes, *, deserialize: bool = False) -> str:
    """What the plan holds, as text.

    With ``deserialize`` (off by default: deserializing initialises CUDA in the calling process,
    which this plugin must never do behind a test's back), the engine inspector's JSON is returned
    when the engine deserializes. Otherwise, and where deserializing fails (always without a GPU:
    "cudaError 35: CUDA driver version is insufficient for CUDA runtime version"), the report is
    read from the plan's bytes: its header magic, foreign nodes and convolution records
    (:func:`plan_conv_layers`), preceded by why the inspector was not used.
    """
    trt = load_module(module_name)
    lines: list[str] = []
    if deserialize:
        logger = CapturingLogger.create(trt)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is not None:
            inspector = engine.create_engine_inspector()
            return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        lines.append(
            "engine inspector unavailable: deserialize_cuda_engine returned None: "
            + " | ".join(logger.errors())
        )
    else:
        lines.append("engine inspector not used (deserializing would initialise CUDA)")
    lines.append(f"plan: {len(plan)} bytes, magic {plan[:4]!r}")
    lines.extend(f"foreign node: {name}" for name in _plan_foreign_nodes(plan))
    lines.extend(f"convolution: {rec}" for rec in plan_conv_layers(plan))
    return "\n".join(lines)
