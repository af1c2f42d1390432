"""Turn a failed run into a sentence a person can act on.

The message names the order, the context that owned the engine when it was built, the context
current when it ran (and whether each is the primary context), and the likely cause and fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .names import (
    CONTEXT_DESTROYED,
    DEVICE_HOP,
    DRIVER_FIRST,
    FOREIGN_STREAM,
    FORK_AFTER_INIT,
    GRAPH_CAPTURE,
    LAZY_STALL,
    MULTI_DEVICE,
    THREAD_HOP,
)
from .trace import ContextNames

if TYPE_CHECKING:
    from .backends.base import Engine, ExecResult
    from .contexts import Snapshot
    from .orders import OrderState
    from .trace import Mismatch, Timeline

FIX = (
    "Fix: initialise torch before anything creates a context (torch-first), or push the "
    "engine's context around execution (cuCtxPushCurrent/cuCtxPopCurrent, pycuda ctx.push()/pop(); "
    "the trtctx_fix_context fixture does this)."
)


#: What went wrong under each context hazard: the hazard says it, whatever the contexts compared.
HAZARD_CAUSES = {
    FOREIGN_STREAM: (
        "The engine was handed a stream made in another context than its own (as pycuda code "
        "makes one): a stream belongs to the context it was made in, and an engine enqueued on "
        "another context's stream fails (TensorRT: 'invalid resource handle'). Fix: make the "
        "stream in the engine's context (torch.cuda.Stream() under torch's), or let the engine "
        "use its own (trtctx_fix_context)."
    ),
    GRAPH_CAPTURE: (
        "The engine's launch was captured by torch.cuda.graph on a stream of torch's context "
        "while the engine's kernels belong to another: the launch fails inside the capture, the "
        "graph holds nothing, and its replays never write the outputs. No push fixes a capture: "
        "build the engine in torch's context (torch-first), or run it outside the graph "
        "(trtctx_fix_context runs it uncaptured, its context pushed)."
    ),
    CONTEXT_DESTROYED: (
        "The engine's context was destroyed while the engine still held kernels and memory "
        "there (a library's cleanup, pycuda's context.detach()): nothing of it can run again. "
        "Fix: keep the context alive for the engine's lifetime (trtctx_fix_context keeps it)."
    ),
    FORK_AFTER_INIT: (
        "The engine ran in a process forked after CUDA was initialised (here only cuInit, as a "
        "library's import does): a forked child cannot use CUDA, every driver call in it "
        "returns CUDA_ERROR_NOT_INITIALIZED, and torch's own guard only knows of torch's "
        "initialisation. Fix: fork before any CUDA call, or start workers with spawn "
        "(multiprocessing.get_context('spawn')); trtctx_fix_context runs the engine unforked."
    ),
    LAZY_STALL: (
        "The engine's first launch waited while a kernel polled on another stream: under lazy "
        "loading (CUDA_MODULE_LOADING=LAZY, the driver's default since CUDA 12.2) the driver "
        "loads a kernel at its first launch and waits for the device to drain first, so a "
        "persistent kernel that waits for this engine's output hangs both. Fix: "
        "CUDA_MODULE_LOADING=EAGER before CUDA starts, or run each engine once before the "
        "persistent work starts (trtctx_fix_context loads its kernels first)."
    ),
    DEVICE_HOP: (
        "The engine and its buffers live on another device than the one the executing thread "
        "bound: a new thread's first CUDA runtime call binds device 0 (cudaSetDevice's "
        "default), whose primary context then is current, not the engine's device's. Fix: "
        "cudaSetDevice (torch.cuda.set_device) to the engine's device on that thread, or push "
        "the engine's context there (trtctx_fix_context)."
    ),
}


def likely_cause(state: OrderState | None, engine: Engine, result: ExecResult) -> str:
    if state is not None and state.order in HAZARD_CAUSES:
        return HAZARD_CAUSES[state.order]
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
    if (state is not None and state.order == THREAD_HOP) or built.thread != ran.thread:
        return (
            f"The engine was built on thread {built.thread} in a context of its own; thread "
            f"{ran.thread} had no context, so the runtime made the primary context current "
            f"there. {FIX}"
        )
    if ran.is_primary and not built.is_primary:
        how = (
            "torch's first CUDA allocation"
            if state and state.order == DRIVER_FIRST
            else ("torch (its first allocation or set_device)")
        )
        return (
            f"{how} made the primary context current after the engine was built in a context "
            f"created with cuCtxCreate (as import pycuda.autoinit does). {FIX}"
        )
    if state is not None and state.order == MULTI_DEVICE:
        return "torch and the engine are on different devices. " + FIX
    return f"Another context was current than the one the engine was built in. {FIX}"


def diagnose(state: OrderState | None, engine: Engine, result: ExecResult, fixed: bool) -> str:
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
        lines.append(f"{what}. " + SWITCH_CAUSE.format(old=old, new=new))
        if len(found) > 1:
            lines.append(f"and {len(found) - 1} more such launches (trtctx trace lists them)")
        lines.append(CONTEXT_FIX)
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
