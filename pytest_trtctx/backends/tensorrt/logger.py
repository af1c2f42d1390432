"""The TensorRT module, its version, and a logger that keeps what the library says.

Every function of this subpackage takes the TensorRT module *object* (``tensorrt`` or
``tensorrt_rtx``), which :func:`load_module` imports on demand: importing the plugin must not
load a CUDA library.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from ...errors import BackendUnavailable, TrtctxError

__all__ = [
    "MODULES",
    "CapturingLogger",
    "EngineBuildError",
    "LogRecord",
    "load_module",
    "module_version",
]


_SEVERITY_NAMES = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")


_ERROR_LEVEL = 1  # ILogger.Severity.ERROR; INTERNAL_ERROR is 0 (lower is more severe)


_WARNING_LEVEL = 2


#: The importable module names this backend drives, full TensorRT first.
MODULES = ("tensorrt", "tensorrt_rtx")


class EngineBuildError(TrtctxError):
    """The builder (or runtime) refused; ``errors`` holds the logger's ERROR messages verbatim."""

    def __init__(self, message: str, errors: list[str]) -> None:
        self.errors = list(errors)
        text = message
        if errors:
            text += "; logger errors:\n" + "\n".join(f"  {e}" for e in errors)
        else:
            text += " (the logger recorded no error)"
        super().__init__(text)


def load_module(name: str) -> Any:
    """Import ``tensorrt`` or ``tensorrt_rtx``; BackendUnavailable carries the exact import error.

    The import error matters: "No module named 'tensorrt'" and a libnvinfer that fails to load
    (missing CUDA runtime, wrong glibc) need different fixes.
    """
    if name not in MODULES:
        raise BackendUnavailable(
            f"unknown TensorRT module {name!r}; expected one of {', '.join(MODULES)}"
        )
    import importlib

    try:
        return importlib.import_module(name)
    except Exception as exc:  # ImportError, or OSError from a shared library that fails to load
        raise BackendUnavailable(f"cannot import {name}: {type(exc).__name__}: {exc}") from exc


def module_version(trt: Any) -> str:
    """``trt.__version__`` (part of every engine cache key: plans are not portable across it)."""
    return str(getattr(trt, "__version__", "unknown"))


class LogRecord(NamedTuple):
    """One logger message: ``severity`` is the ILogger severity name (``"ERROR"``)."""

    severity: str
    message: str


class CapturingLogger:
    """Records every message at WARNING and above; :meth:`log` never raises.

    ``ILogger`` lives in the TensorRT module, which must not be imported at plugin import time, so
    this class is a mixin: :meth:`create` builds (once per module) a subclass of
    ``(CapturingLogger, trt.ILogger)`` and returns an instance that TensorRT accepts as its logger.

    :meth:`log` must never raise: the bindings call it from C++, catch the exception and print
    "Exception caught in log()" to stderr, and the message being logged -- usually the one error
    that says why a build failed -- is lost. It is also called from TensorRT's own threads, hence
    the lock.
    """

    _trt_base: Any = None
    _subclasses: dict[int, type[CapturingLogger]] = {}  # noqa: RUF012 - a deliberate class cache

    def __init__(self) -> None:
        base = type(self)._trt_base
        if base is None:
            raise TypeError("use CapturingLogger.create(trt), not CapturingLogger()")
        base.__init__(self)  # pybind11 requires the C++ base to be initialised explicitly
        self._lock = threading.Lock()
        self.records: list[LogRecord] = []
        self.dropped = 0  # messages that could not be recorded (should stay 0)

    @classmethod
    def create(cls, trt: Any) -> CapturingLogger:
        """A new logger for module ``trt`` (``tensorrt`` or ``tensorrt_rtx``)."""
        sub = cls._subclasses.get(id(trt))
        if sub is None:
            sub = type(
                f"CapturingLogger_{trt.__name__}",
                (cls, trt.ILogger),
                {"_trt_base": trt.ILogger, "__module__": __name__},
            )
            cls._subclasses[id(trt)] = sub
        return sub()

    def log(self, severity: Any, msg: Any) -> None:
        """ILogger callback: keep WARNING and above, never raise (see the class docstring)."""
        try:
            level = int(severity)
            if level > _WARNING_LEVEL:
                return
            name = _SEVERITY_NAMES[level] if 0 <= level < len(_SEVERITY_NAMES) else str(severity)
            with self._lock:
                self.records.append(LogRecord(name, str(msg)))
        except Exception:  # must not propagate into C++
            self.dropped += 1

    def mark(self) -> int:
        """A position for :meth:`errors`'s ``since``: errors of one run only."""
        with self._lock:
            return len(self.records)

    def errors(self, since: int = 0) -> list[str]:
        """Messages of severity ERROR or INTERNAL_ERROR recorded since position ``since``."""
        with self._lock:
            return [
                r.message for r in self.records[since:] if r.severity in ("ERROR", "INTERNAL_ERROR")
            ]

    def warnings(self, since: int = 0) -> list[str]:
        """Messages of severity WARNING recorded since position ``since``."""
        with self._lock:
            return [r.message for r in self.records[since:] if r.severity == "WARNING"]
