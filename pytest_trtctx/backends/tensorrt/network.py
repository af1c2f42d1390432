"""The network under test: one strongly typed convolution of a spec, and its weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .logger import CapturingLogger, EngineBuildError

if TYPE_CHECKING:
    from ...engines.spec import ConvSpec

__all__ = [
    "CONV_LAYER_NAME",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ConvNetwork",
    "bf16_bits",
    "build_conv_network",
    "weights_digest",
]


#: Tensor and layer names of the conv network; the layer name shows up in the serialized plan,
#: which is how :func:`plan_conv_layers` finds the convolution without deserializing.
INPUT_NAME = "x"


OUTPUT_NAME = "y"


CONV_LAYER_NAME = "trtctx_conv2d"


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


def bf16_bits(values: Any) -> Any:
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
        bits = data if data.dtype == np.uint16 else bf16_bits(data)
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
