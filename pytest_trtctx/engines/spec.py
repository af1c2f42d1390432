"""One convolution of the engine matrix: :class:`ConvSpec`, and the validation of one entry.

A spec is plain data with ``torch.nn.functional.conv2d`` semantics (NCHW, weights
``[C_out, C_in / groups, kH, kW]``); :meth:`ConvSpec.from_mapping` checks one ``[[conv]]`` table
strictly (unknown keys are errors: a silently ignored typo such as ``strides = 2`` would quietly
test another convolution) and :meth:`ConvSpec.to_toml` writes one back. Standard library only.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pytest_trtctx.errors import MatrixError

#: The reference kernels index every tensor with a 32-bit int.
MAX_ELEMENTS = 2**31 - 1
#: The largest stride, padding or dilation, and padded size: what a 32-bit int holds.
MAX_INDEX = 2**31 - 1
#: A spec's tensors are made on the CPU (inputs, the reference) and on the device: one that needs
#: more than this is a typo, not a test.
MAX_TENSOR_BYTES = 4 << 30

__all__ = ["DTYPES", "ConvSpec", "as_int", "show"]

DTYPES = ("float32", "float16", "bfloat16")

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

_NAME_RULE = "a non-empty string of letters, digits, '_', '.' or '-'"

_DEPTHWISE = "depthwise"

_FIELDS = (
    "name",
    "batch",
    "in_channels",
    "out_channels",
    "height",
    "width",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "groups",
    "dtype",
    "bias",
)

_OPTIONAL = frozenset({"bias"})

# Common spellings people reach for; only used to make the error message point at the fix.
_DTYPE_ALIASES = {
    "fp32": "float32",
    "f32": "float32",
    "float": "float32",
    "fp16": "float16",
    "f16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
}


@dataclass(frozen=True)
class ConvSpec:
    """One 2-D convolution of the matrix, in NCHW layout, with torch ``conv2d`` semantics."""

    name: str
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    dtype: str
    bias: bool = True

    @property
    def output_hw(self) -> tuple[int, int]:
        """Output (height, width), by the formula of ``torch.nn.functional.conv2d``."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
        )
        return (_out_size(self.height, kh, sh, ph, dh), _out_size(self.width, kw, sw, pw, dw))

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """``(N, C_in, H, W)``."""
        return (self.batch, self.in_channels, self.height, self.width)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """``(C_out, C_in / groups, kH, kW)``, as torch lays out a conv2d weight."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """``(N, C_out, H_out, W_out)``."""
        return (self.batch, self.out_channels, *self.output_hw)

    @property
    def depthwise(self) -> bool:
        """One group per input channel (a channel multiplier of ``out_channels / in_channels``)."""
        return self.groups == self.in_channels and self.groups > 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass (bias additions not counted)."""
        out_h, out_w = self.output_hw
        per_output = (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1]
        return self.batch * self.out_channels * out_h * out_w * per_output

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict of the fields (tuples as lists); :meth:`from_mapping` accepts it."""
        return {
            "name": self.name,
            "batch": self.batch,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "height": self.height,
            "width": self.width,
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
            "groups": self.groups,
            "dtype": self.dtype,
            "bias": self.bias,
        }

    def to_toml(self) -> str:
        """A ``[[conv]]`` entry for ``conv_matrix.toml``, ready to paste; it loads back equal."""
        groups = json.dumps(_DEPTHWISE) if self.depthwise else str(self.groups)
        lines = [
            "[[conv]]",
            f"name = {json.dumps(self.name, ensure_ascii=False)}",
            f"batch = {self.batch}",
            f"in_channels = {self.in_channels}",
            f"out_channels = {self.out_channels}",
            f"height = {self.height}",
            f"width = {self.width}",
            f"kernel = {_pair_toml(self.kernel)}",
            f"stride = {_pair_toml(self.stride)}",
            f"padding = {_pair_toml(self.padding)}",
            f"dilation = {_pair_toml(self.dilation)}",
            f"groups = {groups}",
            f"dtype = {json.dumps(self.dtype)}",
            f"bias = {'true' if self.bias else 'false'}",
        ]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], *, where: str) -> ConvSpec:
        """Validate one ``[[conv]]`` table and build the spec.

        ``where`` prefixes every message (``"file: [[conv]] #3 ('k3_s2')"``). The first problem
        found raises :class:`MatrixError`; fields are checked in file-format order, unknown keys
        first, because a misspelt key would otherwise surface as a confusing "missing field".
        Duplicate names are a property of the whole file and are checked by :func:`load_matrix`.
        """
        if not isinstance(data, Mapping):
            raise MatrixError(f"{where}: expected a table of fields, got {show(data)}")
        for key in data:
            if key not in _FIELDS:
                hint = difflib.get_close_matches(str(key), _FIELDS, n=1)
                did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise MatrixError(
                    f"{where}: field {key!r}: unknown key{did_you_mean}; "
                    f"allowed keys are {', '.join(_FIELDS)}"
                )
        for key in _FIELDS:
            if key not in data and key not in _OPTIONAL:
                raise MatrixError(f"{where}: field {key!r}: missing (required)")

        name = data["name"]
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise MatrixError(f"{where}: field 'name': expected {_NAME_RULE}, got {show(name)}")

        batch = _positive_int(data, "batch", where)
        in_channels = _positive_int(data, "in_channels", where)
        out_channels = _positive_int(data, "out_channels", where)
        height = _positive_int(data, "height", where)
        width = _positive_int(data, "width", where)
        kernel = _pair(data, "kernel", where, minimum=1)
        stride = _pair(data, "stride", where, minimum=1)
        padding = _pair(data, "padding", where, minimum=0)
        dilation = _pair(data, "dilation", where, minimum=1)
        groups = _groups(data, where, in_channels, out_channels)
        dtype = _dtype(data, where)
        bias = data.get("bias", True)
        if not isinstance(bias, bool):
            raise MatrixError(f"{where}: field 'bias': expected true or false, got {show(bias)}")

        sizes = (("height", height), ("width", width))
        for axis, (label, size) in enumerate(sizes):
            k, s, p, d = kernel[axis], stride[axis], padding[axis], dilation[axis]
            # The kernels' input index spans -pad .. size + pad (a size past it alone is an
            # input too large, said by check_bounds).
            if size <= MAX_INDEX < size + 2 * p:
                raise MatrixError(
                    f"{where}: field 'padding': {label} + 2*padding would be {size + 2 * p}, "
                    f"more than {MAX_INDEX} (the reference kernels index with 32-bit integers)"
                )
            out = _out_size(size, k, s, p, d)
            if out < 1:
                raise MatrixError(
                    f"{where}: field 'kernel': output {label} would be {out} "
                    "((size + 2*pad - dil*(k-1) - 1) // stride + 1 with "
                    f"size={size}, pad={p}, dil={d}, k={k}, stride={s}); "
                    "the dilated kernel must fit in the padded input, "
                    "so that the output is at least 1"
                )

        spec = cls(
            name=name,
            batch=batch,
            in_channels=in_channels,
            out_channels=out_channels,
            height=height,
            width=width,
            kernel=kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            dtype=dtype,
            bias=bias,
        )
        spec.check_bounds(where)
        return spec

    def check_bounds(self, where: str) -> None:
        """Every tensor of the spec fits what the reference kernels index (32-bit ints) and a
        machine holds (:data:`MAX_TENSOR_BYTES` each); MatrixError names the field that is
        too large."""
        tensors = (
            ("input", self.input_shape, "batch, in_channels, height or width"),
            ("weight", self.weight_shape, "out_channels, in_channels or kernel"),
            ("output", self.output_shape, "batch, out_channels, height or width"),
        )
        size = {"float32": 4, "float16": 2, "bfloat16": 2}[self.dtype]
        for what, shape, fields in tensors:
            count = 1
            for dim in shape:
                count *= dim
            if count > MAX_ELEMENTS or count * size > MAX_TENSOR_BYTES:
                raise MatrixError(
                    f"{where}: the {what} would hold {count} elements ({count * size} bytes): "
                    f"at most {MAX_ELEMENTS} elements (the reference kernels index with 32-bit "
                    f"integers) and {MAX_TENSOR_BYTES >> 30} GiB per tensor; lower {fields}"
                )


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pair_toml(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"[{pair[0]}, {pair[1]}]"


def as_int(value: object, minimum: int) -> int | None:
    """``value`` if it is an int >= ``minimum``, else None.

    bool is a subclass of int, so it is excluded explicitly: ``batch = true`` must not read as 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return None
    return value


def _positive_int(data: Mapping[str, object], key: str, where: str) -> int:
    value = as_int(data[key], 1)
    if value is None:
        raise MatrixError(
            f"{where}: field {key!r}: expected a positive integer, got {show(data[key])}"
        )
    return value


def _pair(data: Mapping[str, object], key: str, where: str, *, minimum: int) -> tuple[int, int]:
    value = data[key]
    items = value if isinstance(value, list) else [value, value]
    if len(items) == 2:
        first, second = as_int(items[0], minimum), as_int(items[1], minimum)
        if first is not None and second is not None:
            for each in (first, second):
                # Backends take these as 32-bit ints (ctypes.c_int, TensorRT's Dims): a larger
                # one would wrap silently (2**32 + 1 becomes 1) and test another convolution.
                if each > MAX_INDEX:
                    raise MatrixError(
                        f"{where}: field {key!r}: {each} is more than {MAX_INDEX} (backends "
                        "take it as a 32-bit integer)"
                    )
            return (first, second)
    what = "a positive integer" if minimum >= 1 else "a non-negative integer"
    raise MatrixError(f"{where}: field {key!r}: expected {what} or [h, w], got {show(value)}")


def _groups(data: Mapping[str, object], where: str, in_channels: int, out_channels: int) -> int:
    value = data["groups"]
    if value == _DEPTHWISE:
        if out_channels % in_channels:
            raise MatrixError(
                f"{where}: field 'groups': \"depthwise\" means groups = in_channels "
                f"({in_channels}), which needs out_channels to be a multiple of it, "
                f"got out_channels {out_channels}"
            )
        return in_channels
    groups = as_int(value, 1)
    if groups is None:
        raise MatrixError(
            f"{where}: field 'groups': expected a positive integer or \"depthwise\", "
            f"got {show(value)}"
        )
    for label, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
        if channels % groups:
            raise MatrixError(
                f"{where}: field 'groups': expected a divisor of both channel counts, "
                f"got {groups}, which does not divide {label} {channels}"
            )
    return groups


def _dtype(data: Mapping[str, object], where: str) -> str:
    value = data["dtype"]
    if isinstance(value, str) and value in DTYPES:
        return value
    alias = _DTYPE_ALIASES.get(value.lower()) if isinstance(value, str) else None
    hint = f" (did you mean {alias!r}?)" if alias else ""
    allowed = ", ".join(json.dumps(d) for d in DTYPES)
    raise MatrixError(f"{where}: field 'dtype': expected one of {allowed}, got {show(value)}{hint}")


def show(value: object) -> str:
    """A value as it would be written in TOML, for "got ..." in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, float):
        return f"{value!r} (a float)"
    return repr(value)
