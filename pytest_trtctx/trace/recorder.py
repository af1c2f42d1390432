"""The context tracer's CUPTI side: a callback subscriber that records, in the process that runs
the tests, every context made or made current, every module loaded and function looked up, and
each launch of those functions, with the line of the test's code that led to it.

Rules:

* **Opt-in, and only the callbacks it needs.** :data:`DRIVER_CALLS` and :data:`RUNTIME_CALLS`
  are enabled one callback id at a time (a whole domain would call back on every
  ``cuCtxGetDevice`` torch makes), plus the resource events of contexts made and destroyed.
* **It never raises into the driver.** The callback runs inside a driver call on the caller's
  thread; whatever goes wrong in it is counted and kept as text (:attr:`Tracer.trouble`), never
  raised.
* **Launches stay cheap.** Only a launch of a function whose lookup was seen (an engine's
  kernel, loaded with ``cuModuleLoadData`` and found with ``cuModuleGetFunction``) is recorded
  with its line; other launches (torch's own kernels) are counted.
* **One subscriber per process.** CUPTI before 13.5 allows one subscriber: where another one
  (torch's profiler, Nsight) holds it, :func:`start` says so and the test runs untraced;
  a profiler started after the tracer gets no callbacks of its own (docs/trace.md).

The events are :class:`~pytest_trtctx.trace.timeline.Event` values; reading them is :mod:`.trace`'s
work. Importing this module imports no CUDA: ``cupti`` is imported by :func:`start`.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import sysconfig
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..cuda import driver
from ..cuda.driver import result_name
from ..messages import INSTALL_TRACE, STARTED_FROM
from .timeline import Event

#: Driver calls subscribed to, by what they tell: made current, created, module, function,
#: launch (with the offset of the CUfunction in the call's parameter struct), stream.
CURRENT_CALLS = ("cuCtxSetCurrent", "cuCtxPushCurrent_v2", "cuCtxPopCurrent_v2")
CREATE_CALLS = ("cuCtxCreate_v2", "cuCtxCreate_v3", "cuCtxCreate_v4")
PRIMARY_CALLS = ("cuDevicePrimaryCtxRetain",)
RESET_CALLS = ("cuDevicePrimaryCtxReset_v2", "cuCtxDestroy_v2")
MODULE_CALLS = ("cuModuleLoad", "cuModuleLoadData", "cuModuleLoadDataEx", "cuModuleLoadFatBinary")
FUNCTION_CALLS = ("cuModuleGetFunction",)
#: Launches: where the CUfunction and the stream sit in the call's parameter struct. The
#: classic launches take (CUfunction f, 7 unsigned ints, CUstream hStream, ...): the stream at 40
#: after padding; the Ex launches take (const CUlaunchConfig *config, CUfunction f, ...), whose
#: config holds 7 unsigned ints and then the stream, at 32.
LAUNCH_CALLS: dict[str, tuple[int, int, bool]] = {  # name -> (f offset, stream offset, in config)
    "cuLaunchKernel": (0, 40, False),
    "cuLaunchKernel_ptsz": (0, 40, False),
    "cuLaunchCooperativeKernel": (0, 40, False),
    "cuLaunchCooperativeKernel_ptsz": (0, 40, False),
    "cuLaunchKernelEx": (8, 32, True),
    "cuLaunchKernelEx_ptsz": (8, 32, True),
}
STREAM_CALLS = ("cuStreamCreate", "cuStreamCreateWithPriority")
DRIVER_CALLS = (
    *CURRENT_CALLS,
    *CREATE_CALLS,
    *PRIMARY_CALLS,
    *RESET_CALLS,
    *MODULE_CALLS,
    *FUNCTION_CALLS,
    *LAUNCH_CALLS,
    *STREAM_CALLS,
)
#: The runtime's own device switch: torch's ``set_device`` and first allocation go through it.
RUNTIME_CALLS = ("cudaSetDevice_v3020",)

#: Where ``functionParams`` and ``functionReturnValue`` sit in CUPTI's ``CUpti_CallbackData``
#: (callbackSite, functionName, functionParams, functionReturnValue, ...: an enum padded to 8
#: bytes, then pointers), on 64-bit Linux. The parameter structs are the driver's own
#: (``generated_cuda_meta.h``): their fields in the order of the call's arguments.
PARAMS_OFFSET = 16
RETURN_OFFSET = 24

#: A traced process keeps at most this many events; past it only mismatching launches are kept
#: (a test that launches a traced kernel a million times must not grow without bound).
MAX_PROCESS_EVENTS = 5000

MSG_NO_CUPTI = (
    "the context tracer needs cupti-python, matched to the CUPTI of this torch: "
    + INSTALL_TRACE
    + " ({why})"
)
MSG_NO_SUBSCRIBE = "the context tracer could not subscribe to CUPTI: {why}"
MSG_BUSY = (
    "the context tracer could not subscribe to CUPTI: {why}. Another CUPTI subscriber is active "
    "in this process (torch.profiler, Nsight Systems or another tool); CUPTI before 13.5 allows "
    "one. The test ran untraced."
)
#: What the tracer adds, said where it is off and a context went wrong.
MSG_WOULD_ADD = (
    "--trtctx-trace (or the trtctx_trace marker) names the line that made each context current "
    "and the context each kernel was loaded in"
)

_PLUGIN = Path(__file__).resolve().parents[1]
#: Frames never named: this module's, and the driver helper's, whose every line is the same
#: unwrapping of one call (its caller says what the call was for).
_UNSAID = frozenset({__file__, driver.__file__})
_SUITE = _PLUGIN / "suite"
_LIBRARIES = tuple(
    {
        str(Path(p).resolve())
        for k in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(k))
    }
)


def _deref(address: int) -> int:
    """The pointer stored at ``address`` (0 for a null address)."""
    return int(ctypes.c_void_p.from_address(address).value or 0) if address else 0


@functools.lru_cache(maxsize=4096)
def _user_code(filename: str) -> bool:
    """A frame of the test's own code: not the plugin (its suite is test code), not a library."""
    path = Path(filename).resolve() if filename and not filename.startswith("<") else None
    if path is None:
        return False
    if path.is_relative_to(_SUITE):
        return True
    if path.is_relative_to(_PLUGIN):
        return False
    text = str(path)
    return not any(text.startswith(lib) for lib in _LIBRARIES)


def where_from(frame: Any) -> tuple[str, str, str, bool]:
    """(where, code, via, found) for the Python stack at ``frame``: the innermost line of the
    test's own code and its source, with the innermost line of any other Python code (the
    plugin's or a library's) as ``via`` when that is another one. Where no test code is on the
    stack (the plugin's own work, an order's recipe), the innermost line and ``found`` False."""
    import linecache

    inner = None
    for f in _frames(frame):
        filename = f.f_code.co_filename
        if filename in _UNSAID:
            continue
        if inner is None:
            inner = f
        if _user_code(filename):
            via = "" if f is inner else _line(inner)
            return _short(f), linecache.getline(filename, f.f_lineno).strip(), via, True
    if inner is None:
        return "?", "", "", False
    code = linecache.getline(inner.f_code.co_filename, inner.f_lineno).strip()
    return _line(inner), code, "", False


def _frames(frame: Any) -> Iterator[Any]:
    """``frame`` and its callers; on a thread the plugin started for a test's work, on into the
    frame that started it (names.STARTED_FROM), since that thread's own stack ends in
    threading."""
    while frame is not None:
        yield frame
        frame = frame.f_back
    frame = getattr(threading.current_thread(), STARTED_FROM, None)
    while frame is not None:
        yield frame
        frame = frame.f_back


def _short(frame: Any) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"


def _line(frame: Any) -> str:
    return f"{_short(frame)} in {frame.f_code.co_name}"


class Tracer:
    """The process's subscriber and what it saw."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.functions: dict[int, tuple[int, str]] = {}  # function -> (module, name)
        self.homes: dict[int, int] = {}  # module -> the context it was loaded in
        self.current: dict[int, int] = {}  # thread ident -> context last seen current
        self.primaries: set[int] = set()  # primary contexts already named
        self.calls: dict[int, list[str]] = {}  # thread ident -> driver calls in progress
        self.untraced_launches = 0
        self.dropped = 0
        self.trouble: list[str] = []
        self.label = ""  # what the plugin is doing when no test code is on the stack
        self._cupti: Any = None
        self._subscriber: Any = None
        self._names: dict[tuple[int, int], str] = {}

    # Subscribing ------------------------------------------------------------------------------
    def bind(self, cupti: Any) -> list[tuple[int, int]]:
        """Learn ``cupti``'s callback ids for the calls traced; the (domain, id) to enable."""
        self._cupti = cupti
        domains = cupti.CallbackDomain
        wanted = []
        for domain, table, names in (
            (domains.DRIVER_API, cupti.driver_api_trace_cbid, DRIVER_CALLS),
            (domains.RUNTIME_API, cupti.runtime_api_trace_cbid, RUNTIME_CALLS),
        ):
            for name in names:
                if name in table.__members__:  # an older CUPTI may lack the newest variants
                    key = (int(domain), int(table[name]))
                    self._names[key] = name
                    wanted.append(key)
        resource = cupti.CallbackIdResource
        for cbid in (resource.CONTEXT_CREATED, resource.CONTEXT_DESTROY_STARTING):
            wanted.append((int(domains.RESOURCE), int(cbid)))
        return wanted

    def start(self) -> str | None:
        """Subscribe; None when tracing, else why not (the test runs untraced)."""
        from .cupti_match import cupti_mismatch

        mismatch = cupti_mismatch()
        if mismatch is not None:
            return mismatch
        try:
            from cupti import cupti
        except Exception as exc:  # not installed, or its libcupti is missing
            return MSG_NO_CUPTI.format(why=f"{type(exc).__name__}: {exc}")
        wanted = self.bind(cupti)
        try:
            self._subscriber = cupti.subscribe(self._callback, None)
        except Exception as exc:  # no driver, or another subscriber holds CUPTI
            why = f"{type(exc).__name__}: {exc}"
            busy = "MULTIPLE_SUBSCRIBERS" in why.upper().replace(" ", "_")
            return (MSG_BUSY if busy else MSG_NO_SUBSCRIBE).format(why=why)
        try:
            for domain, cbid in wanted:
                cupti.enable_callback(1, self._subscriber, domain, cbid)
        except Exception as exc:
            self.stop()
            return f"the context tracer could not enable its callbacks: {type(exc).__name__}: {exc}"
        return None

    def stop(self) -> None:
        if self._subscriber is not None and self._cupti is not None:
            try:
                self._cupti.unsubscribe(self._subscriber)
            except Exception as exc:
                self.trouble.append(f"unsubscribe: {type(exc).__name__}: {exc}")
        self._subscriber = None

    # The callback ----------------------------------------------------------------------------
    def _callback(self, _userdata: Any, domain: Any, cbid: Any, cbdata: Any) -> None:
        try:
            self.on(int(domain), int(cbid), cbdata)
        except BaseException as exc:  # never into the driver
            if len(self.trouble) < 20:
                self.trouble.append(f"{type(exc).__name__}: {exc}")

    def on(self, domain: int, cbid: int, cbdata: Any) -> None:
        """One callback: ``cbdata`` is CUPTI's callback data (``callback_site``, ``context`` and
        ``ptr``, the address of its C struct) for an API call, its resource data (``context``)
        for a resource event."""
        cupti = self._cupti
        thread = threading.get_ident()
        if domain == int(cupti.CallbackDomain.RESOURCE):
            context = int(getattr(cbdata, "context", 0) or 0)
            if cbid == int(cupti.CallbackIdResource.CONTEXT_CREATED):
                calls = self.calls.get(thread) or ["a CUDA runtime call"]
                self._add("created", context, calls[-1])
            else:
                self._add("destroyed", context, "context destroyed")
            return
        name = self._names.get((domain, cbid))
        if name is None:
            return
        entering = int(cbdata.callback_site) == int(cupti.ApiCallbackSite.API_ENTER)
        calls = self.calls.setdefault(thread, [])
        if entering:
            calls.append(name)
            return
        if calls:
            calls.pop()
        context = int(cbdata.context or 0)
        data = int(cbdata.ptr)
        params = _deref(data + PARAMS_OFFSET)
        returned = _deref(data + RETURN_OFFSET)  # a CUresult (an int) on the way out
        result = ctypes.c_int.from_address(returned).value if returned else 0
        failed = "" if result == 0 else result_name(result)
        if name in LAUNCH_CALLS:
            at_f, at_stream, in_config = LAUNCH_CALLS[name]
            function = _deref(params + at_f) if params else 0
            known = self.functions.get(function)
            if known is None:
                self.untraced_launches += 1
                return
            base = _deref(params) if in_config else params
            stream = _deref(base + at_stream) if base else 0
            self._add(
                "launch",
                context,
                name,
                module=known[0],
                function=function,
                kernel=known[1],
                result=failed,
                stream=stream,
            )
        elif name in MODULE_CALLS:
            module = _deref(_deref(params)) if params and not failed else 0
            self._add("module", context, name, module=module, result=failed)
        elif name in FUNCTION_CALLS:
            if params and not failed:
                function, module = _deref(_deref(params)), _deref(params + 8)
                raw = ctypes.c_char_p(_deref(params + 16)).value or b""
                kernel = raw.decode(errors="replace")
                self.functions[function] = (module, kernel)
                self._add(
                    "function", context, name, module=module, function=function, kernel=kernel
                )
        elif name in PRIMARY_CALLS:  # said once per primary context: each later retain is
            if params and not failed:  # only a reference more (torch and backends retain often)
                primary = _deref(_deref(params))
                if primary not in self.primaries:
                    self.primaries.add(primary)
                    device = ctypes.c_int.from_address(params + 8).value
                    self._add("created", primary, name, primary_of=device)
        elif name in CREATE_CALLS:
            self._add("created", context, name, result=failed)
            self._switch(thread, context, name)
        elif name in RESET_CALLS:
            self.primaries.discard(context)  # a reset primary is made anew at its next retain
            self._add("destroyed", context, name, result=failed)
        elif name in STREAM_CALLS:  # (CUstream *phStream, unsigned int flags, ...)
            stream = _deref(_deref(params)) if params and not failed else 0
            self._add("stream", context, name, result=failed, stream=stream)
        else:  # made current: the context, as the call left it
            self._switch(thread, context, name)

    def _switch(self, thread: int, context: int, api: str) -> None:
        if self.current.get(thread) != context:
            self.current[thread] = context
            self._add("current", context, api)

    def _add(
        self,
        kind: Any,
        context: int,
        api: str,
        *,
        module: int = 0,
        function: int = 0,
        kernel: str = "",
        primary_of: int | None = None,
        result: str = "",
        stream: int = 0,
    ) -> None:
        if len(self.events) >= MAX_PROCESS_EVENTS and not (
            kind == "launch" and self.homes.get(module, context) != context
        ):  # past the bound only a launch in another context than its module's is kept
            self.dropped += 1
            return
        if kind == "module":
            self.homes[module] = context
        where, code, via, found = where_from(sys._getframe(1))
        if not found and self.label:  # the plugin's own work: say which, keep the line as via
            where, via = self.label, where
        self.events.append(
            Event(
                kind,
                context,
                api,
                where,
                code,
                threading.current_thread().name,
                module=module,
                function=function,
                name=kernel,
                primary_of=primary_of,
                result=result or "CUDA_SUCCESS",
                via=via,
                stream=stream,
            )
        )


#: The tracer of this process, once started; else why it could not start (asked once).
TRACER: Tracer | None = None
WHY_OFF: str | None = None


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
    """What the plugin is doing meanwhile (an order's recipe, prebuilding), as events with no
    test code on the stack are named; nothing where no tracer runs."""
    if TRACER is None:
        yield
        return
    TRACER.label = label
    try:
        yield
    finally:
        TRACER.label = ""


def start() -> tuple[Tracer | None, str | None]:
    """Start this process's tracer (once); (tracer, None), or (None, why it is off)."""
    global TRACER, WHY_OFF
    if TRACER is not None:
        return TRACER, None
    if WHY_OFF is not None:  # the answer does not change within a process
        return None, WHY_OFF
    tracer = Tracer()
    WHY_OFF = tracer.start()
    if WHY_OFF is not None:
        return None, WHY_OFF
    TRACER = tracer
    return tracer, None
