"""The convolution engine matrix: which conv2d configurations the plugin builds and checks.

The matrix lives in ``engines/conv_matrix.toml`` as plain data so that adding a case is a one-entry
edit with no code change. This module reads and validates it (stdlib only: it is imported at
collection time, before any CUDA library may be touched) and turns each entry into a
:class:`ConvSpec`, whose ``name`` is the pytest id of the tests generated from it.

File format::

    schema = 1

    [[conv]]
    name = "k3s2d1g1_f16_b1_17x19"   # unique, [A-Za-z0-9_.-]+
    batch = 1                        # positive ints: batch, in/out_channels, height, width
    in_channels = 16
    out_channels = 32
    height = 17
    width = 19
    kernel = 3                       # int or [h, w]; kernel/stride/dilation >= 1, padding >= 0
    stride = 2
    padding = 1
    dilation = 1
    groups = 1                       # positive int dividing both channel counts, or "depthwise"
    dtype = "float16"                # one of DTYPES
    bias = true                      # optional, default true

Validation is strict (unknown keys are errors) because a silently ignored typo such as
``strides = 2`` would quietly test a different convolution than the one intended.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_trtctx.errors import ConfigError, MatrixError

__all__ = [
    "DTYPES",
    "SCHEMA_VERSION",
    "ConvSpec",
    "default_matrix_path",
    "load_matrix",
    "select",
]

DTYPES = ("float32", "float16", "bfloat16")
SCHEMA_VERSION = 1

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
_TOP_LEVEL = ("schema", "conv")

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

# A line that opens a ``[[conv]]`` table, to point messages at a line (tomllib gives no positions).
_ENTRY_HEADER_RE = re.compile(r"^[ \t]*\[\[[ \t]*conv[ \t]*\]\]", re.MULTILINE)


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
            raise MatrixError(f"{where}: expected a table of fields, got {_show(data)}")
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
            raise MatrixError(f"{where}: field 'name': expected {_NAME_RULE}, got {_show(name)}")

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
            raise MatrixError(f"{where}: field 'bias': expected true or false, got {_show(bias)}")

        sizes = (("height", height), ("width", width))
        for axis, (label, size) in enumerate(sizes):
            k, s, p, d = kernel[axis], stride[axis], padding[axis], dilation[axis]
            out = _out_size(size, k, s, p, d)
            if out < 1:
                raise MatrixError(
                    f"{where}: field 'kernel': output {label} would be {out} "
                    "((size + 2*pad - dil*(k-1) - 1) // stride + 1 with "
                    f"size={size}, pad={p}, dil={d}, k={k}, stride={s}); "
                    "the dilated kernel must fit in the padded input, "
                    "so that the output is at least 1"
                )

        return cls(
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


def default_matrix_path(rootdir: Path) -> Path:
    """Where the matrix lives in a checkout: ``<rootdir>/engines/conv_matrix.toml``."""
    return rootdir / "engines" / "conv_matrix.toml"


def load_matrix(path: Path) -> list[ConvSpec]:
    """Read and validate a matrix file; return its specs in file order.

    Every problem raises :class:`MatrixError`. File-level problems (unreadable, TOML syntax,
    schema) stop at once; entry problems are collected, the first per entry, and reported
    together, one line each, so that fixing a file takes one round trip rather than one per entry.
    """
    shown = _display(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MatrixError(f"{shown}: matrix file not found") from None
    except OSError as exc:
        raise MatrixError(f"{shown}: cannot read the matrix file: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MatrixError(f"{shown}: not valid UTF-8 (at byte {exc.start})") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"{shown}: TOML syntax error: {exc}") from None

    entries = document.get("conv")
    _check_schema(document, entries, shown)
    for key in document:
        if key not in _TOP_LEVEL:
            raise MatrixError(
                f"{shown}: top-level key {key!r}: unknown; the file holds 'schema' and "
                "[[conv]] entries only"
            )
    if entries is None or entries == []:
        raise MatrixError(f"{shown}: no [[conv]] entries; the matrix needs at least one")
    if not isinstance(entries, list):
        raise MatrixError(
            f"{shown}: top-level key 'conv': expected an array of tables ([[conv]] entries), "
            f"got {_show(entries)}"
        )

    lines = _entry_lines(text, len(entries))
    specs: list[ConvSpec] = []
    problems: list[str] = []
    first_use: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        where = _where(shown, index, entry, lines)
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a table of fields, got {_show(entry)}")
            continue
        name = entry.get("name")
        if isinstance(name, str):
            first = first_use.setdefault(name, index)
            if first != index:
                at = f" (line {lines[first - 1]})" if lines else ""
                problems.append(
                    f"{where}: field 'name': duplicate name {name!r}, already used by "
                    f"[[conv]] #{first}{at}; names are pytest ids and must be unique"
                )
                continue
        try:
            specs.append(ConvSpec.from_mapping(entry, where=where))
        except MatrixError as exc:
            problems.append(str(exc))
    if problems:
        raise MatrixError("\n".join(problems))
    return specs


def select(specs: Iterable[ConvSpec], names: Sequence[str] | None) -> list[ConvSpec]:
    """The specs whose name is in ``names`` (all of them for ``None``), in matrix order.

    Unknown names raise :class:`ConfigError` rather than :class:`MatrixError`: the names come
    from a setting (command-line option, ini key, marker), not from the matrix file, and the
    plugin reports ConfigError as a usage error.
    """
    pool = list(specs)
    if names is None:
        return pool
    if isinstance(names, str):  # a lone str is a Sequence[str] too; don't select by letters
        names = [names]
    known = [spec.name for spec in pool]
    known_set = set(known)
    unknown = [name for name in dict.fromkeys(names) if name not in known_set]
    if unknown:
        parts = []
        for name in unknown:
            hint = difflib.get_close_matches(name, known, n=1)
            parts.append(f"{name!r} (did you mean {hint[0]!r}?)" if hint else repr(name))
        raise ConfigError(
            f"unknown conv matrix name(s): {', '.join(parts)}; "
            f"known names are: {', '.join(known) if known else '(none)'}"
        )
    wanted = set(names)
    return [spec for spec in pool if spec.name in wanted]


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _pair_toml(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"[{pair[0]}, {pair[1]}]"


def _as_int(value: object, minimum: int) -> int | None:
    """``value`` if it is an int >= ``minimum``, else None.

    bool is a subclass of int, so it is excluded explicitly: ``batch = true`` must not read as 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return None
    return value


def _positive_int(data: Mapping[str, object], key: str, where: str) -> int:
    value = _as_int(data[key], 1)
    if value is None:
        raise MatrixError(
            f"{where}: field {key!r}: expected a positive integer, got {_show(data[key])}"
        )
    return value


def _pair(data: Mapping[str, object], key: str, where: str, *, minimum: int) -> tuple[int, int]:
    value = data[key]
    items = value if isinstance(value, list) else [value, value]
    if len(items) == 2:
        first, second = _as_int(items[0], minimum), _as_int(items[1], minimum)
        if first is not None and second is not None:
            return (first, second)
    what = "a positive integer" if minimum >= 1 else "a non-negative integer"
    raise MatrixError(f"{where}: field {key!r}: expected {what} or [h, w], got {_show(value)}")


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
    groups = _as_int(value, 1)
    if groups is None:
        raise MatrixError(
            f"{where}: field 'groups': expected a positive integer or \"depthwise\", "
            f"got {_show(value)}"
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
    raise MatrixError(
        f"{where}: field 'dtype': expected one of {allowed}, got {_show(value)}{hint}"
    )


def _check_schema(document: Mapping[str, object], entries: object, shown: str) -> None:
    if "schema" not in document:
        # TOML puts every key after a [[conv]] header into that entry, so a ``schema = 1`` written
        # below the first entry is not top-level at all; say so, it is an easy mistake.
        stray = isinstance(entries, list) and any(
            isinstance(entry, dict) and "schema" in entry for entry in entries
        )
        note = (
            " (a 'schema' key after a [[conv]] header belongs to that entry: "
            "move it above the first [[conv]])"
            if stray
            else ""
        )
        raise MatrixError(
            f"{shown}: top-level key 'schema': missing; expected 'schema = {SCHEMA_VERSION}' "
            f"at the top of the file{note}"
        )
    schema = document["schema"]
    if _as_int(schema, 0) != SCHEMA_VERSION:
        raise MatrixError(
            f"{shown}: top-level key 'schema': expected {SCHEMA_VERSION} (the only version this "
            f"pytest-trtctx reads), got {_show(schema)}"
        )


def _entry_lines(text: str, count: int) -> list[int] | None:
    """Line numbers of the ``[[conv]]`` headers, or None when they can't be matched to entries.

    A plain scan can be fooled (a header inside a multi-line string, an inline ``conv = [...]``),
    so the lines are only used when their count equals the number of entries tomllib found.
    """
    lines = [text.count("\n", 0, match.start()) + 1 for match in _ENTRY_HEADER_RE.finditer(text)]
    return lines if len(lines) == count else None


def _where(shown: str, index: int, entry: object, lines: list[int] | None) -> str:
    where = f"{shown}: [[conv]] #{index}"
    name = entry.get("name") if isinstance(entry, dict) else None
    if isinstance(name, str):
        where += f" ({name!r})"
    if lines is not None:
        where += f" at line {lines[index - 1]}"
    return where


def _display(path: Path) -> str:
    """The path as messages show it: relative to the working directory when it lies below it."""
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except (ValueError, OSError):
            pass
    return str(path)


def _show(value: object) -> str:
    """A value as it would be written in TOML, for "got ..." in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, float):
        return f"{value!r} (a float)"
    return repr(value)
