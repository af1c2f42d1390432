"""TensorRT and TensorRT-RTX: one code path that builds, inspects and runs a conv2d engine.

``tensorrt`` (full TensorRT) and ``tensorrt_rtx`` (TensorRT-RTX) expose the same Python API
(``Builder``, ``create_network``, ``add_convolution_nd``, ``build_serialized_network``,
``Runtime``...), so every function here takes the module *object* and detects features with
``hasattr`` rather than version pins: a pin would go stale with each release, an attribute check
says exactly what this installed library can do. The module-specific bits are small and named:

* :func:`_target_enum` -- only TensorRT-RTX can build for a chosen compute capability
  (``IBuilderConfig.set_compute_capability``); full TensorRT builds for the GPU it runs on.
* :data:`RTX_MIN_RUNNABLE_CC` / :data:`RTX_RUNS_ABOVE_CC` -- what the TensorRT-RTX runtime accepts.

Nothing here imports ``tensorrt``, ``tensorrt_rtx``, ``numpy``, ``torch`` or ``cuda`` at module
level: importing the plugin must not load a CUDA library, because which library initialises CUDA
first is exactly what the plugin tests.

What works without a GPU (measured with tensorrt-rtx-cu13 1.7.1.116, no libcuda): building and
serializing every engine of the conv matrix, the network-level checks, and looking into the plan's
bytes. Deserializing needs a driver (``cudaError 35: CUDA driver version is insufficient``), so
the engine inspector and :class:`TensorRTBackend` execution cannot run here.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import BackendUnavailable, TrtctxError
from .base import Engine, ExecResult

if TYPE_CHECKING:
    from pathlib import Path

    from ..spec import ConvSpec

__all__ = [
    "CONV_LAYER_NAME",
    "INPUT_NAME",
    "MODULES",
    "OUTPUT_NAME",
    "RTX_MIN_RUNNABLE_CC",
    "RTX_RUNS_ABOVE_CC",
    "CapturingLogger",
    "ConvNetwork",
    "EngineBuildError",
    "LogRecord",
    "TensorRTBackend",
    "build_conv_network",
    "build_plan",
    "builder_settings",
    "can_run_here",
    "inspect_plan",
    "load_module",
    "module_version",
    "parse_conv_record",
    "plan_conv_layers",
    "runnable_compute_capabilities",
    "weights_digest",
]

#: The importable module names this backend drives, full TensorRT first.
MODULES = ("tensorrt", "tensorrt_rtx")

#: Tensor and layer names of the conv network; the layer name shows up in the serialized plan,
#: which is how :func:`plan_conv_layers` finds the convolution without deserializing.
INPUT_NAME = "x"
OUTPUT_NAME = "y"
CONV_LAYER_NAME = "trtctx_conv2d"

#: TensorRT-RTX builds for ``ComputeCapability.SM75`` but its runtime refuses anything below 8.0:
#: libtensorrt_rtx.so.1 (1.7.1.116) carries "Unsupported compute capability, need compute
#: capability 80 or above", and its run-time refusal lists "8.0 8.6 8.9 12.0 12.1 >12.0".
RTX_MIN_RUNNABLE_CC = (8, 0)
#: The "``>12.0``" of that list: every compute capability above 12.0 is accepted too. Taken from
#: the library's error text (FACTS.md, H100 run); the Python API exposes no such value.
RTX_RUNS_ABOVE_CC = (12, 0)

_SEVERITY_NAMES = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")
_ERROR_LEVEL = 1  # ILogger.Severity.ERROR; INTERNAL_ERROR is 0 (lower is more severe)
_WARNING_LEVEL = 2


class EngineBuildError(TrtctxError):
    """The builder (or runtime) refused; ``errors`` holds the logger's ERROR messages verbatim."""

    def __init__(self, message: str, errors: list[str]) -> None:
        self.errors = list(errors)
        text = message
        if errors:
            text += "; logger errors:\n" + "\n".join(f"  {e}" for e in errors)
        else:
            text += " (the logger recorded no error)"
        super().__init__(text)


def load_module(name: str) -> Any:
    """Import ``tensorrt`` or ``tensorrt_rtx``; BackendUnavailable carries the exact import error.

    The import error matters: "No module named 'tensorrt'" and a libnvinfer that fails to load
    (missing CUDA runtime, wrong glibc) need different fixes.
    """
    if name not in MODULES:
        raise BackendUnavailable(
            f"unknown TensorRT module {name!r}; expected one of {', '.join(MODULES)}"
        )
    import importlib

    try:
        return importlib.import_module(name)
    except Exception as exc:  # ImportError, or OSError from a shared library that fails to load
        raise BackendUnavailable(f"cannot import {name}: {type(exc).__name__}: {exc}") from exc


def module_version(trt: Any) -> str:
    """``trt.__version__`` (part of every engine cache key: plans are not portable across it)."""
    return str(getattr(trt, "__version__", "unknown"))


# --------------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------------


class LogRecord(NamedTuple):
    """One logger message: ``severity`` is the ILogger severity name (``"ERROR"``)."""

    severity: str
    message: str


class CapturingLogger:
    """Records every message at WARNING and above; :meth:`log` never raises.

    ``ILogger`` lives in the TensorRT module, which must not be imported at plugin import time, so
    this class is a mixin: :meth:`create` builds (once per module) a subclass of
    ``(CapturingLogger, trt.ILogger)`` and returns an instance that TensorRT accepts as its logger.

    :meth:`log` must never raise: the bindings call it from C++, catch the exception and print
    "Exception caught in log()" to stderr, and the message being logged -- usually the one error
    that says why a build failed -- is lost. It is also called from TensorRT's own threads, hence
    the lock.
    """

    _trt_base: Any = None
    _subclasses: dict[int, type[CapturingLogger]] = {}  # noqa: RUF012 - a deliberate class cache

    def __init__(self) -> None:
        base = type(self)._trt_base
        if base is None:
            raise TypeError("use CapturingLogger.create(trt), not CapturingLogger()")
        base.__init__(self)  # pybind11 requires the C++ base to be initialised explicitly
        self._lock = threading.Lock()
        self.records: list[LogRecord] = []
        self.dropped = 0  # messages that could not be recorded (should stay 0)

    @classmethod
    def create(cls, trt: Any) -> CapturingLogger:
        """A new logger for module ``trt`` (``tensorrt`` or ``tensorrt_rtx``)."""
        sub = cls._subclasses.get(id(trt))
        if sub is None:
            sub = type(
                f"CapturingLogger_{trt.__name__}",
                (cls, trt.ILogger),
                {"_trt_base": trt.ILogger, "__module__": __name__},
            )
            cls._subclasses[id(trt)] = sub
        return sub()

    def log(self, severity: Any, msg: Any) -> None:
        """ILogger callback: keep WARNING and above, never raise (see the class docstring)."""
        try:
            level = int(severity)
            if level > _WARNING_LEVEL:
                return
            name = _SEVERITY_NAMES[level] if 0 <= level < len(_SEVERITY_NAMES) else str(severity)
            with self._lock:
                self.records.append(LogRecord(name, str(msg)))
        except Exception:  # must not propagate into C++
            self.dropped += 1

    def mark(self) -> int:
        """A position for :meth:`errors`'s ``since``: errors of one run only."""
        with self._lock:
            return len(self.records)

    def errors(self, since: int = 0) -> list[str]:
        """Messages of severity ERROR or INTERNAL_ERROR recorded since position ``since``."""
        with self._lock:
            return [
                r.message for r in self.records[since:] if r.severity in ("ERROR", "INTERNAL_ERROR")
            ]

    def warnings(self, since: int = 0) -> list[str]:
        """Messages of severity WARNING recorded since position ``since``."""
        with self._lock:
            return [r.message for r in self.records[since:] if r.severity == "WARNING"]


# --------------------------------------------------------------------------------------------------
# Network and plan
# --------------------------------------------------------------------------------------------------


@dataclass
class ConvNetwork:
    """A built network and everything that must stay alive until the plan is serialized.

    TensorRT does not copy weight memory when a layer is added (``trt.Weights(ndarray)`` makes no
    copy either); it reads it during the build. ``keep`` holds the arrays so that they outlive it.
    """

    builder: Any
    network: Any
    layer: Any
    keep: list[Any] = field(default_factory=list)


def _numpy_of(array: Any) -> Any:
    """A numpy view of ``array``; torch tensors (bfloat16 included) become their raw values/bits.

    numpy has no bfloat16, so a torch bfloat16 tensor comes back as its uint16 bit patterns,
    which :func:`_weights` passes through untouched.
    """
    import numpy as np

    if hasattr(array, "detach") and hasattr(array, "dtype"):  # a torch tensor; no torch import
        tensor = array.detach().to("cpu").contiguous()
        if str(tensor.dtype) == "torch.bfloat16":
            return tensor.view(_torch_int16(tensor)).numpy().view(np.uint16)
        return tensor.numpy()
    return np.asarray(array)


def _torch_int16(tensor: Any) -> Any:
    import torch

    return torch.int16


def _bf16_bits(values: Any) -> Any:
    """float array -> uint16 bfloat16 bit patterns, rounding to nearest even (NaN kept quiet).

    Same rounding as the reference kernels' ``trtctx_float_to_bf16`` and torch's ``.bfloat16()``,
    so TensorRT and the reference see identical weights.
    """
    import numpy as np

    u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    quiet = (u >> 16) | 0x0040
    return np.where(nan, quiet, rounded).astype(np.uint16)


def _weights(trt: Any, array: Any, dtype: str, keep: list[Any]) -> Any:
    """``trt.Weights`` of ``dtype`` (the network's precision: strongly typed networks need it).

    bfloat16: numpy has none, and ``trt.Weights(ndarray)`` infers the type from the array, so the
    weights are built as ``trt.Weights(DataType.BF16, pointer, count)`` over a uint16 array of bit
    patterns (kept alive in ``keep``). A cast layer from float32 would work too but would put an
    extra layer into the engine under test; this way the engine is one bf16 convolution.
    A uint16 array is taken as bit patterns already, a float array is rounded.
    """
    data = _weights_array(array, dtype, keep)
    if dtype == "bfloat16":
        return trt.Weights(trt.DataType.BF16, int(data.ctypes.data), int(data.size))
    return trt.Weights(data)


def _weights_array(array: Any, dtype: str, keep: list[Any]) -> Any:
    """The flat, contiguous numpy array the engine's weights are made from (appended to keep)."""
    import numpy as np

    data = _numpy_of(array)
    if dtype == "bfloat16":
        bits = data if data.dtype == np.uint16 else _bf16_bits(data)
        converted = np.ascontiguousarray(bits.reshape(-1))
    else:
        np_dtype = {"float32": np.float32, "float16": np.float16}[dtype]
        converted = np.ascontiguousarray(data, dtype=np_dtype).reshape(-1)
    keep.append(converted)
    return converted


def weights_digest(spec: ConvSpec, weight: Any, bias: Any | None) -> str:
    """sha256 of the weights as the engine will hold them (an engine cache key part).

    A plan bakes its weights in, so two builds of one spec with other weights are other engines.
    Hashing the converted arrays (bf16 bit patterns, not the float32 they came from) makes equal
    engines share a key however the weights were passed.
    """
    import hashlib

    h = hashlib.sha256()
    for array in (weight, bias):
        if array is None:
            h.update(b"none")
            continue
        keep: list[Any] = []
        _weights_array(array, spec.dtype, keep)
        data = keep[-1]
        h.update(f"{data.dtype.str}:{data.size}:".encode())
        h.update(data.tobytes())
    return h.hexdigest()


def _trt_dtype(trt: Any, dtype: str) -> Any:
    return {"float32": trt.float32, "float16": trt.float16, "bfloat16": trt.bfloat16}[dtype]


def _network_flags(trt: Any) -> int:
    """STRONGLY_TYPED where the module has it (TensorRT-RTX only accepts such networks).

    Full TensorRT before 9.x lacks the flag; there the layer precisions follow the weights and the
    input, which for one convolution amounts to the same engine.
    """
    flags = 0
    creation = trt.NetworkDefinitionCreationFlag
    if hasattr(creation, "STRONGLY_TYPED"):
        flags |= 1 << int(creation.STRONGLY_TYPED)
    elif hasattr(creation, "EXPLICIT_BATCH"):  # TensorRT 8.x needs it for a batch dimension
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    return flags


def build_conv_network(
    trt: Any,
    spec: ConvSpec,
    weight: Any,
    bias: Any | None,
    *,
    builder: Any = None,
    logger: CapturingLogger | None = None,
) -> ConvNetwork:
    """A strongly typed network holding one convolution of ``spec`` (NCHW, batch from the spec).

    ``weight`` has ``spec.weight_shape`` elements and ``bias`` ``out_channels`` (or None), as
    numpy arrays or torch tensors; see :func:`_weights` for bfloat16. The element count is not
    checked here: TensorRT checks it and its message (captured by the logger) is the precise one.
    Raises EngineBuildError when TensorRT refuses to add the layer.
    """
    if builder is None:
        logger = logger or CapturingLogger.create(trt)
        builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    keep: list[Any] = []
    dtype = _trt_dtype(trt, spec.dtype)
    x = network.add_input(INPUT_NAME, dtype, spec.input_shape)
    kernel = _weights(trt, weight, spec.dtype, keep)
    bias_w = _weights(trt, bias, spec.dtype, keep) if bias is not None else None
    mark = logger.mark() if logger is not None else 0
    if bias_w is None:
        layer = network.add_convolution_nd(x, spec.out_channels, spec.kernel, kernel)
    else:
        layer = network.add_convolution_nd(x, spec.out_channels, spec.kernel, kernel, bias_w)
    if layer is None:
        raise EngineBuildError(
            f"{trt.__name__}: add_convolution_nd refused the convolution of {spec.name}",
            logger.errors(mark) if logger is not None else [],
        )
    layer.name = CONV_LAYER_NAME
    layer.stride_nd = spec.stride
    layer.padding_nd = spec.padding
    layer.dilation_nd = spec.dilation
    layer.num_groups = spec.groups
    out = layer.get_output(0)
    out.name = OUTPUT_NAME
    network.mark_output(out)
    return ConvNetwork(builder=builder, network=network, layer=layer, keep=keep)


def _target_enum(trt: Any, target: tuple[int, int]) -> Any:
    """``trt.ComputeCapability.SM<major><minor>`` -- TensorRT-RTX's ahead-of-time targets."""
    enum = getattr(trt, "ComputeCapability", None)
    if enum is None or not hasattr(trt.IBuilderConfig, "set_compute_capability"):
        raise BackendUnavailable(
            f"{trt.__name__} {module_version(trt)} cannot build for a chosen compute capability "
            f"({target[0]}.{target[1]}): it has no IBuilderConfig.set_compute_capability and "
            "builds for the GPU it runs on; pass target=None"
        )
    member = getattr(enum, f"SM{target[0]}{target[1]}", None)
    if member is None:
        known = ", ".join(f"{a}.{b}" for a, b in _enum_targets(trt))
        raise BackendUnavailable(
            f"{trt.__name__} {module_version(trt)} cannot build for compute capability "
            f"{target[0]}.{target[1]}; its build targets (ComputeCapability) are {known}"
        )
    return member


def _enum_targets(trt: Any) -> list[tuple[int, int]]:
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


def builder_settings(
    module_name: str,
    *,
    target: tuple[int, int] | None = None,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
) -> dict[str, object]:
    """The settings :func:`build_plan` applies, as a JSON-friendly dict (an engine cache key part).

    ``target`` None is the portable build: TensorRT-RTX then builds for every compute capability
    it supports ("leave the compute capability unset so that the engine runs on every supported
    GPU", its own message); full TensorRT builds for the GPU it runs on.
    """
    return {
        "module": module_name,
        "target": "portable" if target is None else f"{target[0]}.{target[1]}",
        "strongly_typed": True,
        "version_compatible": version_compatible,
        "hardware_compatibility": hardware_compatibility or "NONE",
        "layer": CONV_LAYER_NAME,
    }


def _apply_options(
    trt: Any,
    config: Any,
    logger: CapturingLogger,
    *,
    target: tuple[int, int] | None,
    version_compatible: bool,
    hardware_compatibility: str | None,
) -> None:
    """Set the compatibility options on ``config``; BackendUnavailable when one cannot be had.

    Support is detected by asking the library, not by version: TensorRT-RTX 1.7 has the
    ``hardware_compatibility_level`` property but ignores it (it logs "setHardwareCompatibilityLevel
    () is unsupported in TensorRT-RTX" and reads back NONE), so the value is read back to check.
    """
    if target is not None:
        member = _target_enum(trt, target)
        config.num_compute_capabilities = 1
        if not config.set_compute_capability(member, 0):
            raise BackendUnavailable(
                f"{trt.__name__}: set_compute_capability({member}) was refused",
            )
    if version_compatible:
        flag = getattr(trt.BuilderFlag, "VERSION_COMPATIBLE", None)
        if flag is None:
            raise BackendUnavailable(
                f"{trt.__name__} {module_version(trt)} has no BuilderFlag.VERSION_COMPATIBLE"
            )
        config.set_flag(flag)
    if hardware_compatibility is not None:
        levels = getattr(trt, "HardwareCompatibilityLevel", None)
        level = getattr(levels, hardware_compatibility, None) if levels is not None else None
        if level is None or not hasattr(config, "hardware_compatibility_level"):
            raise BackendUnavailable(
                f"{trt.__name__} {module_version(trt)} has no hardware compatibility level "
                f"{hardware_compatibility!r}"
            )
        mark = logger.mark()
        config.hardware_compatibility_level = level
        if config.hardware_compatibility_level != level:
            said = "; ".join(logger.warnings(mark) + logger.errors(mark)) or "no message"
            raise BackendUnavailable(
                f"{trt.__name__} {module_version(trt)} ignores hardware_compatibility_level="
                f"{hardware_compatibility} (it reads back "
                f"{config.hardware_compatibility_level}); the library said: {said}"
            )


def build_plan(
    module_name: str,
    spec: ConvSpec,
    weight: Any,
    bias: Any | None,
    *,
    target: tuple[int, int] | None = None,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
) -> bytes:
    """Build ``spec``'s convolution with ``module_name`` and return the serialized plan.

    Needs no GPU with TensorRT-RTX (``target`` None or a compute capability it knows). Raises
    BackendUnavailable when the module or a requested option is missing here (including a
    version-compatible build whose lean runtime library cannot be loaded), EngineBuildError with
    the logger's errors when the builder refuses.
    """
    trt = load_module(module_name)
    logger = CapturingLogger.create(trt)
    builder = trt.Builder(logger)
    net = build_conv_network(trt, spec, weight, bias, builder=builder, logger=logger)
    config = builder.create_builder_config()
    _apply_options(
        trt,
        config,
        logger,
        target=target,
        version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility,
    )
    mark = logger.mark()
    plan = builder.build_serialized_network(net.network, config)
    errors = logger.errors(mark)
    if plan is None or plan.nbytes == 0:
        if version_compatible and any("Unable to load library" in e for e in errors):
            raise BackendUnavailable(
                f"{module_name} {module_version(trt)} cannot build a version-compatible plan "
                "here: " + "; ".join(errors)
            )
        raise EngineBuildError(
            f"{module_name} {module_version(trt)} could not build {spec.name} "
            f"({builder_settings(module_name, target=target)['target']} target)",
            errors,
        )
    data = bytes(plan)
    del net  # the weights in net.keep had to live until here
    return data


# --------------------------------------------------------------------------------------------------
# Where it can run, what the plan holds
# --------------------------------------------------------------------------------------------------


def runnable_compute_capabilities(trt: Any) -> list[tuple[int, int]]:
    """TensorRT-RTX: the compute capabilities its runtime runs engines on (listed ones).

    Taken from the library's own ``ComputeCapability`` build targets, less those below
    :data:`RTX_MIN_RUNNABLE_CC` (the runtime refuses 7.5 although it can build for it). Anything
    above :data:`RTX_RUNS_ABOVE_CC` runs too (not listed: it is open-ended).
    """
    return [cc for cc in _enum_targets(trt) if cc >= RTX_MIN_RUNNABLE_CC]


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


# --------------------------------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------------------------------


@dataclass
class _TrtHandle:
    runtime: Any
    engine: Any
    context: Any
    logger: CapturingLogger
    plan_bytes: int


class TensorRTBackend:
    """Backend protocol over TensorRT / TensorRT-RTX, mirroring :class:`CudaReferenceBackend`.

    **Not yet executed on a GPU**: written against the API and checked only by building plans
    (TensorRT-RTX refuses the one GPU available, compute capability 9.0). ``build`` deserializes
    the engine in the context current on the calling thread (TensorRT, built on the CUDA runtime,
    makes the primary context current on a thread that has none); ``execute`` creates a stream in
    whatever context is current then and calls ``execute_async_v3``, whose False return and the
    logger's errors of that run go into the ExecResult.
    """

    def __init__(self, module_name: str, device: int, cache_dir: Path | None) -> None:
        self.module_name = module_name
        self.name = "tensorrt-rtx" if module_name == "tensorrt_rtx" else "tensorrt"
        self.description = f"{module_name} backend (one conv2d engine per spec)"
        self.device = device
        self.cache_dir = cache_dir
        self._trt = load_module(module_name)

    def _plan(self, spec: ConvSpec, weight: Any, bias: Any | None) -> bytes:
        if self.cache_dir is None:
            return build_plan(self.module_name, spec, weight, bias)
        from .. import driver
        from ..engine_cache import get_or_build, key_parts_for

        version = driver.check("cuDriverGetVersion", driver.api().cuDriverGetVersion())
        parts = key_parts_for(
            self.module_name,
            module_version(self._trt),
            cuda_version=str(getattr(self._trt, "__cuda_version__", "n/a")),
            driver_version=str(version),
            target="portable",
            spec=spec,
            settings=builder_settings(self.module_name),
            weights=weights_digest(spec, weight, bias),
        )
        plan, _hit = get_or_build(
            parts, lambda: build_plan(self.module_name, spec, weight, bias), self.cache_dir
        )
        return plan

    def build(self, spec: ConvSpec, weight: Any, bias: Any | None) -> Engine:
        from .. import driver

        reason = can_run_here(self.module_name, driver.compute_capability(self.device))
        if reason is not None:
            raise BackendUnavailable(reason)
        plan = self._plan(spec, weight, bias)
        trt = self._trt
        logger = CapturingLogger.create(trt)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise EngineBuildError(
                f"{self.module_name}: deserialize_cuda_engine returned None for {spec.name}",
                logger.errors(),
            )
        context = engine.create_execution_context()
        if context is None:
            raise EngineBuildError(
                f"{self.module_name}: create_execution_context returned None for {spec.name}",
                logger.errors(),
            )
        # Describe after deserializing: that is when TensorRT has made its context current.
        ctx = driver.current()
        return Engine(
            spec=spec,
            device=self.device,
            context=ctx,
            built_in=driver.describe_current(self.device),
            handle=_TrtHandle(runtime, engine, context, logger, len(plan)),
            details={"plan_bytes": len(plan)},
        )

    def execute(self, engine: Engine, x: Any, y: Any) -> ExecResult:
        """Run once on ``x`` into ``y`` (torch tensors on the device), synchronously."""
        from .. import driver
        from ..errors import CudaError

        handle: _TrtHandle = engine.handle
        mark = handle.logger.mark()
        drv = driver.api()
        try:
            ran_in = driver.describe_current(self.device)
        except CudaError as exc:
            return ExecResult(exc.result_name, False, None, [str(exc)], exc.result_name)
        stream = None
        returned: Any = None
        errors: list[str] = []
        try:
            for name, tensor in ((INPUT_NAME, x), (OUTPUT_NAME, y)):
                if not handle.context.set_tensor_address(name, int(tensor.data_ptr())):
                    errors.append(f"set_tensor_address({name!r}) returned False")
            if not errors:
                stream = driver.check("cuStreamCreate", drv.cuStreamCreate(1))
                returned = handle.context.execute_async_v3(int(stream))
                driver.check("cuStreamSynchronize", drv.cuStreamSynchronize(stream))
        except CudaError as exc:
            errors.append(str(exc))
        finally:
            if stream is not None:
                drv.cuStreamDestroy(stream)
        errors = handle.logger.errors(mark) + errors
        ok = returned is True and not errors
        signature = None if ok else (errors[0] if errors else "execute_async_v3 returned False")
        return ExecResult(returned, ok, ran_in, errors, signature)

    def close(self, engine: Engine) -> None:
        """Drop context, engine and runtime in that order (TensorRT's required teardown order)."""
        handle: _TrtHandle | None = engine.handle
        if handle is None:
            return
        engine.handle = None
        for attr in ("context", "engine", "runtime"):
            setattr(handle, attr, None)
