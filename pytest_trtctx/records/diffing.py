"""What ``pytest-trtctx diff`` finds between two reports, and the rules it finds it by.

:class:`Diff` holds what changed; the outcome classes, the environment fields that can change
output bits and how a test is named without its folders are the rules both comparisons follow:
``cli.compare`` on two loaded reports, ``diff_stream`` on two report files read a piece at a
time. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

GOOD = {"passed", "known-failure", "xfailed"}
BAD = {"failed", "error"}
SKIPPED = {"skipped"}


@dataclass
class Diff:
    newly_failing: list[tuple[str, str, str]] = field(default_factory=list)  # nodeid, was, sig
    newly_passing: list[tuple[str, str]] = field(default_factory=list)
    newly_skipped: list[tuple[str, str, str]] = field(default_factory=list)  # nodeid, was, why
    newly_running: list[tuple[str, str]] = field(default_factory=list)  # nodeid, outcome now
    known_stopped: list[tuple[str, str]] = field(default_factory=list)  # nodeid, order
    hash_changed: list[tuple[str, str, str, str]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    environment: list[tuple[str, Any, Any]] = field(default_factory=list)
    #: Run settings that changed (key, old, new) among :data:`COMPARED_SETTINGS`: what the two
    #: runs were asked to do differently, said beside the outcomes, never a regression itself.
    settings: list[tuple[str, Any, Any]] = field(default_factory=list)
    not_run: list[tuple[str, str]] = field(default_factory=list)  # nodeid, the report(s)
    incomplete: list[tuple[str, str]] = field(default_factory=list)  # report, how it ended
    #: The runs' first backends where they differ (old, new): a test id names no first
    #: backend (``--trtctx-backend=a,b`` keeps a's ids), so its outcomes compare two backends.
    backend_changed: tuple[str, str] | None = None
    compared: int = 0  # tests in both reports, run to an outcome in both
    same_outcome: int = 0
    hashes_compared: int = 0
    strict_hashes: bool = False

    @property
    def numeric_changes(self) -> list[str]:
        """The environment fields that changed and can change output bits (see NUMERIC_FIELDS)."""
        return [key for key, a, b in self.environment if changes_numerics(key, a, b)]

    @property
    def hashes_regressed(self) -> bool:
        """A changed hash counts unless software or hardware that computes the outputs changed
        (or always, when asked to): a new kernel version string or a second GPU excuses nothing."""
        return bool(self.hash_changed) and (self.strict_hashes or not self.numeric_changes)

    @property
    def regressed(self) -> bool:
        return bool(
            self.newly_failing
            or self.newly_skipped
            or self.known_stopped
            or self.hashes_regressed
            or self.backend_changed
        )


#: Environment fields whose change can change output bits: the driver and CUDA, every library
#: version but Python's, and the model of a GPU present in both runs. Not the OS string, the
#: Python version, or a GPU added or removed (``gpus[1]`` appearing): the computation is the same.
NUMERIC_FIELDS = re.compile(
    r"^(driver|cuda_driver_api|cuda_runtime_torch|versions\.(?!python$).+"
    r"|gpus\[\d+\]\.(name|compute_capability))$"
)


#: Run settings a diff says changed, each with what a report that lacks it ran with:
#: ``--trtctx-isolate`` and ``--trtctx-fast-contexts`` (one hardware queue for the contexts of
#: context-destroyed's processes, a user's tests in them included). The orders and backends show
#: as tests added or removed, the device in the environment.
COMPARED_SETTINGS: dict[str, Any] = {"isolate": None, "fast_contexts": False}


def changes_numerics(key: str, old: Any, new: Any) -> bool:
    if NUMERIC_FIELDS.match(key) is None:
        return False
    return not key.startswith("gpus[") or (old is not None and new is not None)


def skip_reason(test: dict[str, Any]) -> str:
    for message in test.get("messages") or []:
        if str(message).startswith("Skipped: "):
            return str(message)[len("Skipped: ") :]
    return "no reason recorded"


def listed_backends(report: dict[str, Any]) -> list[str]:
    """The backends a report's run listed (a report before the list names one)."""
    settings = report.get("settings") or {}
    return [str(b) for b in settings.get("backends") or [settings.get("backend")]]


def first_backend(report: dict[str, Any]) -> str:
    """The backend a report's unsuffixed test ids ran on: its run's first listed backend."""
    return listed_backends(report)[0]


def compare_headers(diff: Diff, old: dict[str, Any], new: dict[str, Any]) -> None:
    """What both reports' headers say: the environment fields and run settings that changed, a
    first backend that changed."""
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    flatten("", old.get("environment", {}), a)
    flatten("", new.get("environment", {}), b)
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            diff.environment.append((key, a.get(key), b.get(key)))
    settings = (old.get("settings") or {}, new.get("settings") or {})
    for key, default in COMPARED_SETTINGS.items():
        was, now = (side.get(key, default) for side in settings)
        if was != now:
            diff.settings.append((key, was, now))
    backends = (first_backend(old), first_backend(new))
    if backends[0] != backends[1]:
        diff.backend_changed = backends


def flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, sub in enumerate(value):
            flatten(f"{prefix}[{i}]", sub, out)
    else:
        out[prefix] = value


def without_folders(nodeid: str) -> str:
    """A test as it is named wherever its file was collected from (a clone's folder, an
    installed package's): ``tests/regression/test_m.py::test[x]`` is ``test_m.py::test[x]``."""
    path, sep, rest = nodeid.partition("::")
    return path.rsplit("/", 1)[-1] + sep + rest
