"""The convolution engine matrix: which conv2d configurations the plugin builds and checks.

The matrix ships as ``pytest_trtctx/suite/conv_matrix.toml`` (``engines/conv_matrix.toml`` in a
clone) as plain data, so that adding a case is a one-entry edit with no code change. This module
reads and validates it (stdlib only: it is imported at collection time, before any CUDA library may
be touched) and turns each entry into a :class:`ConvSpec`, whose ``name`` is the pytest id of the
tests generated from it.

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
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pytest_trtctx.engines.spec import DTYPES, ConvSpec, as_int, show
from pytest_trtctx.errors import ConfigError, MatrixError
from pytest_trtctx.storage import UnusableInput, read_regular

__all__ = [
    "DTYPES",
    "SCHEMA_VERSION",
    "ConvSpec",
    "default_matrix_path",
    "load_matrix",
    "select",
]

SCHEMA_VERSION = 1
#: The largest matrix file read: thousands of entries fit in far less; a device or a runaway
#: file named as the matrix is refused instead of read into memory.
MAX_MATRIX_BYTES = 16 << 20

_TOP_LEVEL = ("schema", "conv")

# A line that opens a ``[[conv]]`` table, to point messages at a line (tomllib gives no positions).
_ENTRY_HEADER_RE = re.compile(r"^[ \t]*\[\[[ \t]*conv[ \t]*\]\]", re.MULTILINE)


#: The matrix that ships with the plugin, beside its suite (package data).
PACKAGED = Path(__file__).resolve().parents[1] / "suite" / "conv_matrix.toml"


def default_matrix_path(rootdir: Path) -> Path:
    """The rootdir's own ``engines/conv_matrix.toml`` where it has one (a clone, a project with
    its own matrix), else the matrix that ships with the plugin."""
    own = rootdir / "engines" / "conv_matrix.toml"
    return own if own.is_file() else PACKAGED


def load_matrix(path: Path) -> list[ConvSpec]:
    """Read and validate a matrix file; return its specs in file order.

    Every problem raises :class:`MatrixError`. File-level problems (unreadable, TOML syntax,
    schema) stop at once; entry problems are collected, the first per entry, and reported
    together, one line each, so that fixing a file takes one round trip rather than one per entry.
    """
    shown = _display(path)
    try:
        raw = read_regular(path, MAX_MATRIX_BYTES)
    except FileNotFoundError:
        raise MatrixError(f"{shown}: matrix file not found") from None
    except UnusableInput as exc:
        raise MatrixError(f"{shown}: cannot read the matrix file: {exc.strerror}") from None
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
            f"got {show(entries)}"
        )

    lines = _entry_lines(text, len(entries))
    specs: list[ConvSpec] = []
    problems: list[str] = []
    first_use: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        where = _where(shown, index, entry, lines)
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a table of fields, got {show(entry)}")
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
    if as_int(schema, 0) != SCHEMA_VERSION:
        raise MatrixError(
            f"{shown}: top-level key 'schema': expected {SCHEMA_VERSION} (the only version this "
            f"pytest-trtctx reads), got {show(schema)}"
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
