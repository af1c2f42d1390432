"""Whether the tracer's CUPTI matches the one torch brought, read from the installed packages.

cupti-python drives the CUPTI library of its own CUDA minor version, and a CUDA build of torch
pins its CUPTI (torch 2.11+cu130 through ``cuda-toolkit[cupti]``). pip does not hold an installed
package's pins while it resolves another, so ``pip install 'pytest-trtctx[trace]'`` can pick the
newest cupti-python and upgrade torch's CUPTI under it. :func:`cupti_mismatch` says so before the
tracer subscribes, with the command that fixes it (docs/trace.md, 'Installing the tracer').

Only metadata is read: nothing is imported and no CUDA library is loaded. Standard library and
``packaging`` (pytest's own dependency) only.
"""

from __future__ import annotations

import sys
from typing import Any

#: cupti-python and the CUPTI library it drives must be the CUDA minor version torch brought: a
#: resolver that picks the newest cupti-python replaces torch's CUPTI (or, with --no-deps, leaves
#: a cupti-python built for another one). Said instead of tracing, with the command that fixes it.
MSG_CUPTI_MISMATCH = (
    "the context tracer is off: its CUPTI does not match torch's: {what}. "
    "Fix: {fix} (docs/trace.md, 'Installing the tracer')"
)


#: The distributions that ship libcupti: CUDA 13's name, and CUDA 12's and 11's.
CUPTI_LIBRARIES = ("nvidia-cuda-cupti", "nvidia-cuda-cupti-cu12", "nvidia-cuda-cupti-cu11")


def _distribution(name: str, path: list[str] | None) -> Any:
    """The installed distribution ``name`` (first on ``path``, else ``sys.path``), or None."""
    from importlib import metadata

    return next(iter(metadata.distributions(name=name, path=path or sys.path)), None)


def _direct_cupti(dist: Any, extras: frozenset[str]) -> tuple[Any, list[Any]]:
    """(the requirement on a CUPTI library that ``dist`` with ``extras`` holds itself, or None;
    its other requirements that apply)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    others: list[Any] = []
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is not None and not any(
            req.marker.evaluate({"extra": extra}) for extra in (extras or {""})
        ):
            continue
        if canonicalize_name(req.name) in CUPTI_LIBRARIES:
            return req, others
        others.append(req)
    return None, others


def _cupti_requirement(dist: Any, path: list[str] | None) -> tuple[Any, str] | None:
    """(the requirement on a CUPTI library that ``dist`` holds, what it came through: "" or
    the CUDA package between them). Directly, or through one installed CUDA package: torch's
    CUDA 13 wheels ask for ``cuda-toolkit[cupti]``, which pins ``nvidia-cuda-cupti``."""
    req, others = _direct_cupti(dist, frozenset())
    if req is not None:
        return req, ""
    for other in others:
        inner = _distribution(other.name, path)
        if inner is None or not str(other.name).startswith(("cuda", "nvidia")):
            continue
        found, _ = _direct_cupti(inner, frozenset(other.extras))
        if found is not None:
            extras = f"[{','.join(sorted(other.extras))}]" if other.extras else ""
            return found, f"{inner.metadata['Name']}{extras} {inner.version}"
    return None


def _spec(req: Any) -> str:
    """A requirement as pip takes it on a command line: its name and versions, no markers."""
    return f"{req.name}{req.specifier}"


def cupti_mismatch(path: list[str] | None = None) -> str | None:
    """Why the installed cupti-python and CUPTI library cannot trace beside torch's, with the
    command that fixes it; None where they agree, or where there is nothing to compare
    (no cupti-python: starting says so; no torch, or a torch that brings no CUPTI).

    Read from the installed distributions' metadata only: nothing is imported, no CUDA library
    is loaded. ``path`` replaces ``sys.path`` for the lookups (tests)."""
    from packaging.version import InvalidVersion, Version

    ours = _distribution("cupti-python", path)
    if ours is None:
        return None
    ours_req = _cupti_requirement(ours, path)
    torch = _distribution("torch", path)
    torch_req = None if torch is None else _cupti_requirement(torch, path)
    wanted = torch_req or ours_req
    if wanted is None:
        return None
    library = _distribution(wanted[0].name, path)
    installed = None if library is None else str(library.version)
    have = f"{wanted[0].name} {installed}" if installed else f"no {wanted[0].name}"
    torch_off = torch_req is not None and (
        installed is None or installed not in torch_req[0].specifier
    )
    ours_off = ours_req is not None and (
        installed is None or installed not in ours_req[0].specifier
    )
    if not (torch_off or ours_off):
        return None
    said = []
    if torch_req is not None and torch_off:
        through = f" (through {torch_req[1]})" if torch_req[1] else ""
        said.append(f"torch {torch.version} requires {_spec(torch_req[0])}{through}")
    if ours_req is not None:
        said.append(f"cupti-python {ours.version} requires {_spec(ours_req[0])}")
    what = f"{'; '.join(said)}; {have} is installed"
    # The CUPTI to match: the one torch pins, else the one installed.
    pinned = [s.version for s in torch_req[0].specifier if s.operator == "=="] if torch_req else []
    try:
        release = Version((pinned[0].removesuffix(".*") if pinned else installed) or "").release
    except InvalidVersion:
        return MSG_CUPTI_MISMATCH.format(what=what, fix="reinstall torch's CUPTI")
    fix = f"pip install 'cupti-python=={release[0]}.{release[1]}.*'"
    if torch_req is not None and torch_off:
        fix += f" '{_spec(torch_req[0])}'"
    return MSG_CUPTI_MISMATCH.format(what=what, fix=fix)
