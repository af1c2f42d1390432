"""What a timeline of CUDA driver events says about contexts: which context each module (engine)
was loaded in, which was current at each launch of its kernels, and where the current context
changed.

The events are plain data (:class:`Event`), as a CUPTI callback subscriber records them: the API
call or resource event, the context current at it (or the one it concerns), the thread, and the
line of the test's code that made it. This module only reads them; it imports nothing of CUDA,
so its rules are tested with recorded timelines. Contexts get short stable names (``#1``, ``#2``)
in the order they first appear, never raw pointers.

**One numbering per failure.** A failure's ``trtctx contexts`` section (the watch around the call)
and its ``trtctx trace`` section (this timeline) name contexts through one :class:`ContextNames`:
the timeline's contexts first, in the order the process met them, then any the watch alone saw.
So ``#2`` is the same context in both sections.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

Kind = Literal["created", "destroyed", "current", "module", "function", "launch", "stream"]

_LINE = re.compile(r":\d+( in \S+)?$")

#: A timeline kept in a report is cut to this many events (the first ones, and the mismatches).
MAX_EVENTS = 200


class ContextNames:
    """Short names for contexts by handle (``#1``, ``#2``, ...), given in the order asked for
    first: the one numbering that every part of a failure's account uses."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}

    def name(self, handle: int) -> str:
        """The context's name, given now if it has none yet; ``no context`` for 0."""
        if not handle:
            return "no context"
        return self._names.setdefault(handle, f"#{len(self._names) + 1}")

    def __contains__(self, handle: object) -> bool:
        return handle in self._names

    def __len__(self) -> int:
        return len(self._names)


@dataclass(frozen=True)
class Event:
    """One thing the driver did, seen from the test's code."""

    kind: Kind
    #: The context concerned: created or destroyed, made current, current at a module load,
    #: a function lookup or a launch.
    context: int
    api: str  # cuCtxCreate_v4, cuModuleLoadData, cuLaunchKernel, cudaSetDevice ...
    where: str = "?"  # file:line of the test's code that led to it
    code: str = ""  # that line's source
    thread: str = "MainThread"
    module: int = 0  # module loaded, or the module a function belongs to
    function: int = 0  # function looked up or launched
    name: str = ""  # the kernel's name
    primary_of: int | None = None  # the device whose primary context ``context`` is, if it is
    result: str = "CUDA_SUCCESS"
    #: The innermost Python line (the plugin's or a library's) when it is not ``where``.
    via: str = ""
    stream: int = 0  # the stream made, or the stream launched on (0: the default stream)


@dataclass(frozen=True)
class Mismatch:
    """A launch in another context than the one its kernel's module, or its stream, belongs to."""

    launch: Event
    module: Event | None  # where its kernel's module was loaded, if seen
    home: int  # the context the launch needed: the module's, or the stream's
    switch: Event | None  # what made the launch's context current on its thread, if seen
    lookup: Event | None = None  # the kernel's lookup in its module
    stream: Event | None = None  # the stream's making, when the stream is the one out of place


class Timeline:
    """A test's events, read."""

    def __init__(self, events: list[Event], names: ContextNames | None = None) -> None:
        self.events = list(events)
        #: The failure's numbering: this timeline's contexts are named first, in order.
        self.names = ContextNames() if names is None else names
        self.primary: dict[int, int] = {}  # context -> device, for primary contexts
        self.created: dict[int, Event] = {}
        for event in self.events:
            if event.context:
                self.names.name(event.context)
            if event.primary_of is not None and event.context:
                self.primary[event.context] = event.primary_of
            if event.kind == "created":
                self.created.setdefault(event.context, event)

    def name(self, context: int) -> str:
        return self.names.name(context) if context in self.names else "no context"

    def describe(self, context: int) -> str:
        """``#2 (the primary context of device 0)``, ``#1 (created by cuCtxCreate at x.py:45)``."""
        if not context:
            return "no context"
        if context in self.primary:
            return f"{self.name(context)} (the primary context of device {self.primary[context]})"
        made = self.created.get(context)
        if made is not None:
            return f"{self.name(context)} (created by {_api(made.api)} {_place(made.where)})"
        return self.name(context)

    def mismatches(self, since: int = 0) -> list[Mismatch]:
        """Every launch of a kernel in another context than its module's (from the event at
        index ``since`` on: a test's own, where the timeline is its process's)."""
        loaded: dict[int, Event] = {}  # module -> its load
        module_of: dict[int, int] = {}  # function -> module
        lookups: dict[int, Event] = {}  # function -> its lookup
        streams: dict[int, Event] = {}  # stream -> its making
        last_switch: dict[str, Event] = {}  # thread -> what last made a context current there
        found = []
        for index, event in enumerate(self.events):
            if event.kind == "stream" and event.stream:
                streams[event.stream] = event
            elif event.kind == "module":
                loaded[event.module] = event
            elif event.kind == "function":
                module_of[event.function] = event.module
                lookups[event.function] = event
            elif event.kind == "current":
                last_switch[event.thread] = event
            elif event.kind == "launch" and index >= since:
                load = loaded.get(module_of.get(event.function, event.module))
                switch = last_switch.get(event.thread)
                lookup = lookups.get(event.function)
                if load is not None and load.context != event.context:
                    found.append(Mismatch(event, load, load.context, switch, lookup))
                made = streams.get(event.stream)
                if made is not None and made.context != event.context:
                    found.append(Mismatch(event, load, made.context, switch, lookup, made))
        return found

    def explain(self, mismatch: Mismatch) -> str:
        """The mismatch in one sentence, with the lines that did each part."""
        launch, load, switch = mismatch.launch, mismatch.module, mismatch.switch
        kernel = f"kernel `{launch.name}`" if launch.name else "a kernel"
        home = self.describe(mismatch.home)
        origin = mismatch.stream or load
        if mismatch.stream is not None:  # the stream is another context's
            text = (
                f"{kernel} was launched {_at(launch)} on a stream made {_at(mismatch.stream)} "
                f"in context {home}"
            )
        else:
            loaded = f" of the module loaded {_at(load)}" if load is not None else ""
            text = f"{kernel}{loaded} in context {home} was launched {_at(launch)}"
        if origin is not None and launch.thread != origin.thread:
            text += f" on thread {launch.thread}"
        text += f" while context {self.describe(launch.context)} was current"
        if switch is not None and switch.context == launch.context:
            by = f"{_api(switch.api)} {_at(switch)}"
            if switch.code:
                by += f": `{switch.code.strip()}`"
            text += f", made current by {by}"
        if launch.result != "CUDA_SUCCESS":
            text += f"; the launch returned {launch.result}"
        return text

    def account(self, mismatch: Mismatch) -> str:
        """The mismatch's facts for the contexts section, in the timeline's numbering: where the
        kernel's module (or its stream) was made and in which context, what made the launch's
        context current and where. :meth:`explain` says all of it, for the trace section."""
        launch, origin = mismatch.launch, mismatch.stream or mismatch.module
        what = "stream" if mismatch.stream is not None else "module"
        made = f" {_at(origin)}" if origin is not None else ""
        text = (
            f"the kernel's {what} was made{made} in {self.describe(mismatch.home)}; it was "
            f"launched {_at(launch)} while {self.describe(launch.context)} was current"
        )
        switch = mismatch.switch
        if switch is not None and switch.context == launch.context:
            text += f", made current by {_api(switch.api)} {_at(switch)}"
        return text

    def record(self, since: int = 0, found: list[Mismatch] | None = None) -> list[dict[str, Any]]:
        """The timeline of a test for its report (the test's events from index ``since`` of a
        process's timeline): what each of its mismatches rests on (the contexts' making, the
        module's load, the switch), then its own events up to :data:`MAX_EVENTS`, then every
        mismatching launch past that bound; in timeline order, contexts by name. ``found``:
        the test's mismatches, where the caller has them already."""
        if found is None:
            found = self.mismatches(since)
        keep: set[int] = set(range(since, min(len(self.events), since + MAX_EVENTS)))
        index = {id(event): i for i, event in enumerate(self.events)}
        for m in found:
            rests_on = [m.launch, m.module, m.lookup, m.switch, m.stream]
            rests_on += [self.created.get(c) for c in (m.home, m.launch.context)]
            keep.update(index[id(e)] for e in rests_on if e is not None and id(e) in index)
        out = []
        for event in (self.events[i] for i in sorted(keep)):
            data = asdict(event)
            data["context"] = self.name(event.context)
            out.append(data)
        return out


def _place(where: str) -> str:
    """``at test_x.py:45`` for a line, ``in the driver-first order's recipe`` for what the plugin
    was doing when no test code was on the stack."""
    return f"at {where}" if _LINE.search(where) else f"in {where}"


def _at(event: Event) -> str:
    """Where an event happened: the test's line, and the plugin's or a library's line under it."""
    return _place(event.where) + (f" ({event.via})" if event.via else "")


def _api(api: str) -> str:
    """``cuCtxCreate_v4`` -> ``cuCtxCreate``: the call as users write it."""
    head, sep, tail = api.rpartition("_v")
    return head if sep and tail.isdigit() else api
