"""Settings: the options, their ini keys, and the precedence between them.

Precedence, highest first (as pytest-timeout documents it): a marker on the test, then the
command-line option, then the ini key, then the default. Every resolved value remembers where it
came from, so an error (and the report header) can say so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import ConfigError
from .kernels import default_cache_dir
from .names import (
    ALL_ORDERS,
    BACKENDS,
    ISOLATE_MODES,
    MSG_BAD_VALUE,
    MSG_NONE_ONE_ORDER,
    ORDERS,
    TORCH_FIRST,
)

if TYPE_CHECKING:
    import pytest

T = TypeVar("T")

DEFAULT_TIMEOUT = 300.0
DEFAULT_ORDER = TORCH_FIRST


@dataclass(frozen=True)
class Setting(Generic[T]):
    """A resolved value and a human description of where it came from."""

    value: T
    source: str


#: option dest, ini key, command-line flag, help text
OPTIONS: tuple[tuple[str, str, str, str], ...] = (
    (
        "trtctx_order",
        "trtctx_order",
        "--trtctx-order",
        "CUDA init order(s) to run tests under, comma separated or repeated: "
        + ", ".join(ORDERS)
        + f", or '{ALL_ORDERS}'. Default: {DEFAULT_ORDER} for tests that ask for an order; "
        "the plugin stays out of the way of tests that do not.",
    ),
    ("trtctx_device", "trtctx_device", "--trtctx-device", "CUDA device index (default 0)."),
    (
        "trtctx_backend",
        "trtctx_backend",
        "--trtctx-backend",
        "Engine backend: " + ", ".join(BACKENDS) + " (default auto).",
    ),
    (
        "trtctx_isolate",
        "trtctx_isolate",
        "--trtctx-isolate",
        "Process isolation: none (apply one order once in this process), order (one fresh "
        "process per order), test (one fresh process per test). Default: test when an order is "
        "selected, else none.",
    ),
    (
        "trtctx_timeout",
        "trtctx_timeout",
        "--trtctx-timeout",
        f"Seconds a test may make no progress in an isolated process before it is killed and "
        f"reported as hung (default {DEFAULT_TIMEOUT:g}; 0 disables).",
    ),
    (
        "trtctx_workers",
        "trtctx_workers",
        "--trtctx-workers",
        "Isolated processes run at once: a number or 'auto' (CPU count; default).",
    ),
    (
        "trtctx_matrix",
        "trtctx_matrix",
        "--trtctx-matrix",
        "Engine matrix file (default: engines/conv_matrix.toml under the rootdir).",
    ),
    (
        "trtctx_rebuild",
        "trtctx_rebuild",
        "--trtctx-rebuild",
        "Empty the kernel and engine caches under --trtctx-cache-dir at session start, so every "
        "cubin and engine is built anew in this run.",
    ),
    (
        "trtctx_baseline",
        "trtctx_baseline",
        "--trtctx-baseline",
        "Folder of output baselines per environment fingerprint: an output that differs from "
        "this environment's baseline fails its test; one that differs from another "
        "environment's (an upgrade) is reported. New entries are recorded at session end.",
    ),
    (
        "trtctx_baseline_keep",
        "trtctx_baseline_keep",
        "--trtctx-baseline-keep",
        "Keep the outputs themselves in the baseline too, so a difference comes with the "
        "largest absolute difference and where it is.",
    ),
    (
        "trtctx_report",
        "trtctx_report",
        "--trtctx-report",
        "Write a JSON report to this file: environment fingerprint, and per test the order, "
        "backend, spec, outcome, failed check, messages, output SHA-256 and timings "
        "(docs/report.md). Compare two with: pytest-trtctx diff OLD.json NEW.json",
    ),
    (
        "trtctx_cache_dir",
        "trtctx_cache_dir",
        "--trtctx-cache-dir",
        "Folder for compiled kernels and engines (default $TRTCTX_CACHE_DIR, else "
        "$XDG_CACHE_HOME/pytest-trtctx, else ~/.cache/pytest-trtctx).",
    ),
)


def _raw(config: pytest.Config, dest: str, ini: str) -> tuple[Any, str] | None:
    """The raw value and its source, option before ini; None when neither is set."""
    flag = "--" + dest.replace("_", "-")
    value = config.getoption(dest, None)
    if value not in (None, [], ""):
        return value, f"option {flag}"
    ini_value = config.getini(ini)
    if ini_value not in (None, [], ""):
        where = f"ini key {ini}"
        if config.inipath is not None:
            where += f" in {config.inipath.name}"
        return ini_value, where
    return None


def _split(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        out.extend(part.strip() for part in str(item).replace(",", " ").split() if part.strip())
    return out


def parse_orders(value: Any, where: str) -> tuple[str, ...]:
    """Expand and validate a list of order names ('all' expands to every order)."""
    names = _split(value)
    if not names:
        raise ConfigError(MSG_BAD_VALUE.format(where=where, value="", allowed=_allowed_orders()))
    result: list[str] = []
    for name in names:
        if name == ALL_ORDERS:
            expanded: tuple[str, ...] = ORDERS
        elif name in ORDERS:
            expanded = (name,)
        else:
            raise ConfigError(
                MSG_BAD_VALUE.format(where=where, value=name, allowed=_allowed_orders())
            )
        result.extend(o for o in expanded if o not in result)
    return tuple(result)


def _allowed_orders() -> str:
    return ", ".join((*ORDERS, ALL_ORDERS))


def parse_choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    text = str(value).strip()
    if text not in allowed:
        raise ConfigError(MSG_BAD_VALUE.format(where=where, value=text, allowed=", ".join(allowed)))
    return text


def parse_int(value: Any, where: str, *, minimum: int, what: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: expected {what}, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{where}: expected {what}, got {number}")
    return number


def parse_timeout(value: Any, where: str) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise ConfigError(
            f"{where}: expected a number of seconds (0 disables), got {value!r}"
        ) from None
    if seconds < 0 or seconds != seconds:
        raise ConfigError(f"{where}: expected a number of seconds >= 0 (0 disables), got {value!r}")
    return seconds


@dataclass(frozen=True)
class Settings:
    """Everything the options and ini keys decide for one run."""

    orders: Setting[tuple[str, ...]]
    orders_explicit: bool
    device: Setting[int]
    backend: Setting[str]
    isolate: Setting[str]
    timeout: Setting[float]
    workers: Setting[int]
    matrix: Setting[Path]
    cache_dir: Setting[Path]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """True when the run selected an order: only then does the plugin change how tests run."""
        return self.orders_explicit


def resolve(config: pytest.Config) -> Settings:
    """Resolve every setting from options, ini keys and defaults; raise ConfigError if bad."""
    raw = _raw(config, "trtctx_order", "trtctx_order")
    if raw is None:
        orders: Setting[tuple[str, ...]] = Setting((DEFAULT_ORDER,), "default")
        explicit = False
    else:
        orders = Setting(parse_orders(raw[0], raw[1]), raw[1])
        explicit = True

    raw = _raw(config, "trtctx_device", "trtctx_device")
    device = (
        Setting(0, "default")
        if raw is None
        else Setting(parse_int(raw[0], raw[1], minimum=0, what="a device index >= 0"), raw[1])
    )

    raw = _raw(config, "trtctx_backend", "trtctx_backend")
    backend = (
        Setting("auto", "default")
        if raw is None
        else Setting(parse_choice(raw[0], raw[1], BACKENDS), raw[1])
    )

    raw = _raw(config, "trtctx_isolate", "trtctx_isolate")
    if raw is None:
        isolate = Setting("test" if explicit else "none", "default")
    else:
        isolate = Setting(parse_choice(raw[0], raw[1], ISOLATE_MODES), raw[1])
    if isolate.value == "none" and len(orders.value) > 1:
        raise ConfigError(
            MSG_NONE_ONE_ORDER.format(
                where=isolate.source,
                count=len(orders.value),
                orders=", ".join(orders.value),
            )
        )

    raw = _raw(config, "trtctx_timeout", "trtctx_timeout")
    timeout = (
        Setting(DEFAULT_TIMEOUT, "default")
        if raw is None
        else Setting(parse_timeout(raw[0], raw[1]), raw[1])
    )

    raw = _raw(config, "trtctx_workers", "trtctx_workers")
    if raw is None or str(raw[0]).strip() == "auto":
        workers = Setting(os.cpu_count() or 1, "default (auto)" if raw is None else raw[1])
    else:
        workers = Setting(
            parse_int(raw[0], raw[1], minimum=1, what="a number of processes >= 1, or 'auto'"),
            raw[1],
        )

    raw = _raw(config, "trtctx_matrix", "trtctx_matrix")
    if raw is None:
        matrix = Setting(Path(config.rootpath) / "engines" / "conv_matrix.toml", "default")
    else:
        path = Path(str(raw[0]))
        if not path.is_absolute():
            base = (
                Path(config.invocation_params.dir)
                if raw[1].startswith("option")
                else Path(config.rootpath)
            )
            path = base / path
        matrix = Setting(path, raw[1])

    raw = _raw(config, "trtctx_cache_dir", "trtctx_cache_dir")
    cache_dir = (
        Setting(default_cache_dir(), "default")
        if raw is None
        else Setting(Path(str(raw[0])).expanduser().absolute(), raw[1])
    )

    return Settings(
        orders=orders,
        orders_explicit=explicit,
        device=device,
        backend=backend,
        isolate=isolate,
        timeout=timeout,
        workers=workers,
        matrix=matrix,
        cache_dir=cache_dir,
    )
