"""Spec exploration with hypothesis: generate valid conv specs, run a check on each, shrink.

``--trtctx-explore=N`` turns on the ``trtctx_explore`` fixture: ``trtctx_explore(check)`` runs
``check(spec)`` on N generated specs under the current order and backend; a failure is shrunk to a
minimal spec, printed as a ready-to-paste ``[[conv]]`` entry for ``engines/conv_matrix.toml``.
``--trtctx-explore-db=DIR`` sets hypothesis's example database (failures are replayed first on the
next run); by default it is ``.hypothesis/trtctx`` under the rootdir.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .spec import DTYPES, ConvSpec

ENTRY_TITLE = "trtctx: minimal failing spec, ready to paste into engines/conv_matrix.toml:"


def conv_specs(max_channels: int = 32, max_hw: int = 40) -> Any:
    """A hypothesis strategy of valid specs (every one passes the matrix file's validation)."""
    from hypothesis import strategies as st

    @st.composite
    def build(draw: Any) -> ConvSpec:
        kernel = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        depthwise = draw(st.booleans())
        groups = draw(st.sampled_from([1, 2, 4]))
        per_group = draw(st.integers(1, max(1, max_channels // 4)))
        in_channels = groups * per_group
        if depthwise:
            groups = in_channels
        out_channels = groups * draw(st.integers(1, max(1, max_channels // max(groups, 4))))
        # Inputs at least as large as the dilated kernel minus padding: output size >= 1.
        min_h = max(1, dilation[0] * (kernel[0] - 1) + 1 - 2 * padding[0])
        min_w = max(1, dilation[1] * (kernel[1] - 1) + 1 - 2 * padding[1])
        height = draw(st.integers(min_h, max(min_h, max_hw)))
        width = draw(st.integers(min_w, max(min_w, max_hw)))
        return ConvSpec(
            name="explored",
            batch=draw(st.sampled_from([1, 2, 8])),
            in_channels=in_channels,
            out_channels=out_channels,
            height=height,
            width=width,
            kernel=kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            dtype=draw(st.sampled_from(DTYPES)),
            bias=draw(st.booleans()),
        )

    return build()


def explore(
    check: Callable[[ConvSpec], object], *, max_examples: int, database: Path | None
) -> None:
    """Run ``check`` on generated specs; re-raise the shrunk failure with its TOML entry noted."""
    from hypothesis import HealthCheck, given, note, settings
    from hypothesis.database import DirectoryBasedExampleDatabase

    @settings(
        max_examples=max_examples,
        database=_checked(DirectoryBasedExampleDatabase(str(database)), database)
        if database
        else None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        print_blob=False,
    )
    @given(conv_specs())
    def run(spec: ConvSpec) -> None:
        note(f"{ENTRY_TITLE}\n{spec.to_toml()}")
        check(spec)

    run()


def _checked(inner: Any, path: Path) -> Any:
    """hypothesis's directory database ignores a write that fails (a full disk, a folder removed
    or made read-only): a failing example it could not keep would silently not be replayed on the
    next run. This one delegates to it and warns, once, naming the folder."""
    from hypothesis.database import ExampleDatabase

    class Checked(ExampleDatabase):
        warned = False

        def save(self, key: bytes, value: bytes) -> None:
            inner.save(key, value)
            if not Checked.warned and value not in set(inner.fetch(key)):
                Checked.warned = True
                warnings.warn(
                    f"pytest-trtctx: --trtctx-explore-db {path}: an example could not be saved "
                    "there; a failure found now will not be replayed first on the next run",
                    RuntimeWarning,
                    stacklevel=2,
                )

        def fetch(self, key: bytes) -> Iterable[bytes]:
            fetched: Iterable[bytes] = inner.fetch(key)
            return fetched

        def delete(self, key: bytes, value: bytes) -> None:
            inner.delete(key, value)

        def move(self, src: bytes, dest: bytes, value: bytes) -> None:
            inner.move(src, dest, value)

    return Checked()
