"""A warning recorded in one process, shown by another: the plain data a worker (or the child that
collects) sends up, and its replay in the pytest process.

The category crosses by its import path, as pytest-xdist sends it. The pytest process never
imports a module to show a warning: a helper that only a test imports may initialise CUDA when
imported (one that loads NVML), which would end the pytest process's CUDA-clean state.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pytest


def serialize_warning(message: warnings.WarningMessage) -> dict[str, Any]:
    """A recorded warning as plain data (category by import path), as pytest-xdist sends it."""
    category = message.category
    return {
        "message": str(message.message),
        "category": f"{category.__module__}:{category.__qualname__}",
        "filename": message.filename,
        "lineno": message.lineno,
    }


def recorded_warning(
    warning_message: warnings.WarningMessage,
    when: str,
    nodeid: str,
    location: tuple[str, int, str] | None,
) -> dict[str, Any]:
    """``pytest_warning_recorded``'s arguments as plain data, for another process to replay
    (:func:`replay_warning`)."""
    return {
        "warning": serialize_warning(warning_message),
        "when": when,
        "nodeid": nodeid,
        "location": list(location) if location else None,
    }


def replay_warning(config: pytest.Config, data: dict[str, Any], nodeid: str = "") -> None:
    """Record, in the pytest process, a warning another process recorded (:func:`recorded_warning`);
    ``nodeid`` where the data names none."""
    location = data.get("location")
    config.hook.pytest_warning_recorded.call_historic(
        kwargs={
            "warning_message": unserialize_warning(data["warning"]),
            "when": data.get("when", "runtest"),
            "nodeid": data.get("nodeid", nodeid),
            "location": tuple(location) if location else None,
        }
    )


def unserialize_warning(data: dict[str, Any]) -> warnings.WarningMessage:
    """The warning back, in the pytest process. Its category is taken from a module this process
    has already imported, never imported here: importing a test's helper module in the pytest
    process runs that module's import there, which may load NVML or initialise CUDA and would
    make every later fork refused. A category from elsewhere gets a stand-in of the same name."""
    module, _, qualname = str(data.get("category", "")).partition(":")
    category = _imported_category(module, qualname) or _stand_in(module, qualname)
    return warnings.WarningMessage(
        category(str(data.get("message", ""))),
        category,
        str(data.get("filename", "")),
        int(data.get("lineno", 0)),
    )


def _imported_category(module: str, qualname: str) -> type[Warning] | None:
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) and issubclass(found, Warning) else None


#: Stand-ins made so far, by category path: one class per category, so that pytest's summary
#: groups a category's warnings as it would group the real class's.
_STAND_INS: dict[str, type[Warning]] = {}


def _stand_in(module: str, qualname: str) -> type[Warning]:
    """A Warning subclass named as the category the worker recorded."""
    key = f"{module}:{qualname}"
    if key not in _STAND_INS:
        name = qualname.rsplit(".", 1)[-1] or "UserWarning"
        if not name.isidentifier():
            name = "UserWarning"
        made = type(name, (Warning,), {"__module__": module or "builtins"})
        made.__qualname__ = qualname or name
        _STAND_INS[key] = made
    return _STAND_INS[key]
