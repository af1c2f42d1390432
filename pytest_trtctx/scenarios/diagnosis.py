"""Turn a failed run into a sentence a person can act on.

The message names the order, the context that owned the engine when it was built, the context
current when it ran (and whether each is the primary context), and the likely cause and fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..trace.timeline import ContextNames

if TYPE_CHECKING:
    from ..backends.base import Engine, ExecResult
    from ..cuda.contexts import Snapshot
    from ..trace.timeline import Mismatch, Timeline
    from .base import State

FIX = (
    "Fix: initialise torch before anything creates a context (torch-first), or push the "
    "engine's context around execution (cuCtxPushCurrent/cuCtxPopCurrent, pycuda ctx.push()/pop(); "
    "the trtctx_fix_context fixture does this)."
)


def likely_cause(state: State | None, engine: Engine, result: ExecResult) -> str:
    """The scenario's own words where it has them (a hazard says what went wrong whatever the
    contexts were), else what the contexts compared say."""
    if state is not None and state.scenario.cause is not None:
        return state.scenario.cause
    built, ran = engine.built_in, result.ran_in
    if ran is None:
        return "The run failed before a context could be made current."
    if built.handle == ran.handle:
        return (
            "The engine ran in the context it was built in, so this is not a context mismatch: "
            "look at the backend's error and the outputs."
        )
    if built.device is not None and ran.device is not None and built.device != ran.device:
        return (
            f"The engine lives on device {built.device} but device {ran.device}'s context was "
            "current when it ran (torch.cuda.set_device or torch work on another device switched "
            "it). Make the engine's device current, or push its context, around execution."
        )
    if built.thread != ran.thread:
        return (
            f"The engine was built on thread {built.thread} in a context of its own; thread "
            f"{ran.thread} had no context, so the runtime made the primary context current "
            f"there. {FIX}"
        )
    if ran.is_primary and not built.is_primary:
        return (
            "torch (its first CUDA allocation or set_device) made the primary context current "
            "after the engine was built in a context created with cuCtxCreate (as import "
            f"pycuda.autoinit does). {FIX}"
        )
    return f"Another context was current than the one the engine was built in. {FIX}"


def diagnose(state: State | None, engine: Engine, result: ExecResult, fixed: bool) -> str:
    lines = [
        f"order: {state.order if state else 'none applied'}"
        + (f" ({'; '.join(state.steps)})" if state and state.steps else ""),
        f"engine built in: {engine.built_in.describe()}",
        "ran in: " + (result.ran_in.describe() if result.ran_in else "unknown"),
        f"engine context pushed around execution (trtctx_fix_context): {'yes' if fixed else 'no'}",
    ]
    if result.errors:
        lines.append("backend errors: " + " | ".join(result.errors))
    lines.append("likely cause: " + likely_cause(state, engine, result))
    return "\n".join("  " + line for line in lines)


SWITCH_CAUSE = (
    "torch's first CUDA call (an allocation, .to('cuda'), torch.cuda.set_device) makes the "
    "device's primary context current, as a new thread's first CUDA runtime call does; kernels "
    "loaded while {old} was current (an engine deserialized then) belong to {old} and cannot be "
    "launched while {new} is current: the launch fails (CUDA_ERROR_INVALID_HANDLE; TensorRT says "
    "'invalid resource handle' or 'Cask convolution execution') and the outputs are never written."
)
#: The traced account names the call that made the launch's context current, whatever made it
#: (torch's first call, a push, a new thread): the rule is said without guessing at it.
TRACED_CAUSE = (
    "a kernel belongs to the context it was loaded in ({old}) and cannot be launched while "
    "another ({new}) is current: the launch fails (CUDA_ERROR_INVALID_HANDLE; TensorRT and "
    "Triton say 'invalid resource handle') and the outputs are never written."
)
TRACED_FIX = (
    "fix: make the kernel's context current around its launch (cuCtxPushCurrent/cuCtxPopCurrent; "
    "pycuda: ctx.push()/ctx.pop()), or pop a context pushed over it before the launch"
)
CONTEXT_FIX = (
    "fix: push the engine's context around its execution (cuCtxPushCurrent/cuCtxPopCurrent; "
    "pycuda: ctx.push()/ctx.pop()), or initialise torch before anything creates a context "
    "(--trtctx-order=torch-first passes)"
)


def context_diagnosis(
    order: str | None,
    steps: list[str],
    start: Snapshot | None,
    end: Snapshot | None,
    owners: dict[str, int | None],
    traced: tuple[Timeline, list[Mismatch]] | None = None,
) -> str:
    """What was current when, in plain words, with short names for the contexts (#1, #2).

    With ``traced`` (the tracer's timeline of the test's process and the test's mismatches) the
    names are the timeline's, as the trace section says them, and what happened is told from the
    tracer's facts: which context the kernel's module was loaded in and which line made the
    launch's context current, not guessed from the two ends of the call."""
    names = traced[0].names if traced is not None else ContextNames()
    found = traced[1] if traced is not None else []
    name = names.name

    def describe(snap: Snapshot | None) -> str:
        if snap is None:
            return "none: CUDA was not initialised in this process"
        if snap.handle == 0:
            return "none"
        kind = (
            f"the primary context of device {snap.device}"
            if snap.primary
            else f"a context of its own on device {snap.device} (not the device's primary)"
        )
        return f"{name(snap.handle)}, {kind}"

    seen = end or start
    thread = seen.thread if seen is not None else "?"
    lines = [
        f"order: {order or 'none'}" + (f" ({'; '.join(steps)})" if steps else ""),
        f"current context on thread {thread} at the start of the call: {describe(start)}",
        f"at its end: {describe(end)}",
    ]
    for output, owner in owners.items():
        held = "unknown (not device memory of this process)" if owner is None else name(owner)
        lines.append(f"output {output!r}: memory of context {held}")
    changed = start is not None and end is not None and start.handle and start.handle != end.handle
    if found and traced is not None:
        timeline, first = traced[0], found[0]
        what = "what happened (traced): " + timeline.account(first)
        if changed and start is not None and end is not None:
            what += f"; over the call the current context went from {name(start.handle)} to "
            what += name(end.handle)
        old, new = name(first.home), name(first.launch.context)
        lines.append(f"{what}. " + TRACED_CAUSE.format(old=old, new=new))
        if len(found) > 1:
            lines.append(f"and {len(found) - 1} more such launches (trtctx trace lists them)")
        lines.append(TRACED_FIX)
    elif changed and start is not None and end is not None:
        old, new = name(start.handle), name(end.handle)
        what = f"the current context changed during the test, from {old} to {new}"
        if start.device is not None and end.device is not None and start.device != end.device:
            what += f" (device {start.device} to device {end.device})"
        lines.append(f"what happened: {what}. " + SWITCH_CAUSE.format(old=old, new=new))
        lines.append(CONTEXT_FIX)
    elif start is not None and start.handle and end is not None:
        lines.append(
            "the same context was current at the start and the end of the call on this thread; "
            "work launched on another thread runs in that thread's context, which a new thread "
            "does not have until its first CUDA runtime call makes the primary context current"
        )
    return "\n".join(lines)
