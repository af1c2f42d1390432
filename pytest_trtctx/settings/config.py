"""Settings: the options, their ini keys, and every precedence rule between them and the markers.

Precedence, highest first (as pytest-timeout documents it): a marker on the test, then the
command-line option, then the ini key, then the default. The options themselves are the table of
:mod:`.options`. Option, ini key and default are settled here once per run (:func:`resolve`); the
marker's rule is :func:`with_marker`, which the per-test plan (:mod:`.plan`) applies. Every resolved
value remembers where it came from, so that an error (and the report header) can say so.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from ..engines.matrix import default_matrix_path
from ..errors import ConfigError
from ..messages import (
    BACKENDS,
    ISOLATE_MODES,
    MSG_BAD_VALUE,
    MSG_DEBUGGER_ISOLATED,
    MSG_EMPTY_VALUE,
    MSG_NONE_ONE_ORDER,
)
from ..scenarios import Registry
from ..storage import default_cache_dir, path_problem
from .options import (
    AUTO_WORKERS,
    BY_NAME,
    DEFAULT_CUDNN_PLANS,
    DEFAULT_ORDERS,
    DEFAULT_TIMEOUT,
    MAX_CUDNN_PLANS,
    Option,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """A resolved value and a human description of where it came from."""

    value: T
    source: str


def _raw(config: pytest.Config, option: Option) -> tuple[Any, str] | None:
    """The raw value and its source, option before ini; None when neither is set.

    This is the one place where the command line wins over the ini file. An empty value given
    as an option reaches the caller's parser, which says what it allows; an empty ini value, or
    ``-o KEY=``, is no value (pytest's way to clear an ini key: the default applies).
    """
    value = config.getoption(option.name, None)
    if option.kind == "flag":
        if value:
            return True, _option_source(config, option)
    elif value not in (None, []):
        return value, _option_source(config, option)
    ini_value = config.getini(option.name)
    if ini_value not in (None, [], ""):
        # pytest's -o KEY=VALUE overrides the ini file: the value came from the command line.
        if _overridden(config, option.name):
            return ini_value, f"-o {option.name}"
        where = f"ini key {option.name}"
        if config.inipath is not None:
            where += f" in {config.inipath.name}"
        return ini_value, where
    return None


def _overridden(config: pytest.Config, key: str) -> bool:
    """Whether ini key ``key`` was given with pytest's ``-o KEY=VALUE``."""
    overrides = config.getoption("override_ini", None) or []
    return any(str(o).split("=", 1)[0].strip() == key for o in overrides)


def _option_source(config: pytest.Config, option: Option) -> str:
    """``option --flag``, and where it was given when not on the command line alone: the
    ``PYTEST_ADDOPTS`` environment variable or the ini file's ``addopts``, which pytest puts
    before the command line's arguments. A repeated list option (``--trtctx-order``) takes the
    values of every place, so each place is named; any other takes the last place's value."""
    flag = option.flag

    def given_in(args: Any) -> bool:
        return any(str(a) == flag or str(a).startswith(flag + "=") for a in args)

    places: list[str] = []  # last wins: command line, then PYTEST_ADDOPTS, then addopts
    if given_in(config.invocation_params.args):
        places.append("on the command line")
    with contextlib.suppress(ValueError):  # unbalanced quotes: pytest said so already
        if given_in(shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))):
            places.append("in PYTEST_ADDOPTS")
    if given_in(config.getini("addopts")):
        if _overridden(config, "addopts"):
            places.append("in -o addopts")
        elif config.inipath is not None:
            places.append(f"in addopts of {config.inipath.name}")
    if option.kind != "list":
        places = places[:1]
    if places in ([], ["on the command line"]):
        return f"option {flag}"
    return f"option {flag} ({' and '.join(places)})"


def _setting(
    config: pytest.Config, name: str, parse: Callable[[Any, str], T], default: T
) -> Setting[T]:
    raw = _raw(config, BY_NAME[name])
    if raw is None:
        return Setting(default, "default")
    return Setting(parse(raw[0], raw[1]), raw[1])


def split_names(value: Any) -> list[str]:
    """Names from a value: one string or a list, comma- or space-separated."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        out.extend(part.strip() for part in str(item).replace(",", " ").split() if part.strip())
    return out


def parse_orders(value: Any, where: str, registry: Registry) -> tuple[str, ...]:
    """Expand and validate a list of scenario names ('all' expands to every init order,
    'hazards' to every context hazard)."""
    names = split_names(value)
    if not names:
        raise ConfigError(MSG_EMPTY_VALUE.format(where=where, allowed=registry.allowed()))
    result: list[str] = []
    for name in names:
        expanded = registry.expand(name)
        if expanded is None:
            raise ConfigError(
                MSG_BAD_VALUE.format(where=where, value=name, allowed=registry.allowed())
            )
        result.extend(o for o in expanded if o not in result)
    return tuple(result)


#: In ``--trtctx-backend``'s list: every vendor backend installed here (``./dev matrix``).
VENDORS = "vendors"


def parse_backends(value: Any, where: str) -> tuple[str, ...]:
    """One backend name or a list of them (``cuda,triton,cudnn``): each an allowed name or
    ``vendors`` (the vendor backends installed here, found, not imported; none where neither
    is), none twice, and ``auto`` beside none it may resolve to."""
    from ..backends import installed_vendors

    names = split_names(value)
    allowed = (*BACKENDS, VENDORS)
    if not names:
        raise ConfigError(MSG_EMPTY_VALUE.format(where=where, allowed=", ".join(allowed)))
    result: list[str] = []
    for name in names:
        found = installed_vendors() if name == VENDORS else [parse_choice(name, where, allowed)]
        for one in found:
            if one in result:
                raise ConfigError(f"{where}: backend {one!r} is listed twice")
            result.append(one)
    if not result:
        raise ConfigError(
            f"{where}: {value!r} lists no backend: no vendor backend is installed here"
        )
    twice = [name for name in ("cuda", "tensorrt", "tensorrt_rtx") if name in result]
    if "auto" in result and twice:
        raise ConfigError(
            f"{where}: 'auto' and {twice[0]!r} are both listed, but auto may resolve to "
            f"{twice[0]!r} (it picks among tensorrt, tensorrt_rtx and cuda): list one of them"
        )
    return tuple(result)


def _backends(config: pytest.Config) -> Setting[tuple[str, ...]]:
    """``--trtctx-backend``; where it says ``vendors``, its source says what that found."""
    raw = _raw(config, BY_NAME["trtctx_backend"])
    if raw is None:
        return Setting(("auto",), "default")
    value, source = raw
    listed = parse_backends(value, source)
    if VENDORS in split_names(value):
        from ..backends import installed_vendors

        source += f"; {VENDORS}: {', '.join(installed_vendors()) or 'none installed'}"
    return Setting(listed, source)


def registry_of(config: pytest.Config) -> Registry:
    """The shipped scenarios and those the ``pytest_trtctx_scenarios`` hook returned: a
    conftest.py or plugin that returns something else is named in the error."""
    registry = Registry()
    impls = config.pluginmanager.hook.pytest_trtctx_scenarios.get_hookimpls()
    for impl in impls:
        where = f"pytest_trtctx_scenarios in {impl.plugin_name}"
        file = getattr(impl.plugin, "__file__", None)
        if file:
            where = f"pytest_trtctx_scenarios in {file}"
        returned: Any = impl.function(config=config)
        if returned is None:
            continue
        try:
            scenarios = list(returned)
        except TypeError:
            raise ConfigError(
                f"{where}: returned {returned!r}; return an iterable of Scenario objects"
            ) from None
        for scenario in scenarios:
            registry.add(scenario, where)
    return registry


def parse_choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    text = str(value).strip()
    if not text:
        raise ConfigError(MSG_EMPTY_VALUE.format(where=where, allowed=", ".join(allowed)))
    if text not in allowed:
        raise ConfigError(MSG_BAD_VALUE.format(where=where, value=text, allowed=", ".join(allowed)))
    return text


def parse_int(value: Any, where: str, *, minimum: int, what: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{where}: expected {what}, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{where}: expected {what}, got {number}")
    return number


def parse_timeout(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number of seconds (0 disables), got {value!r}")
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise ConfigError(
            f"{where}: expected a number of seconds (0 disables), got {value!r}"
        ) from None
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigError(f"{where}: expected a number of seconds >= 0 (0 disables), got {value!r}")
    return seconds


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(
        f"{where}: expected true or false ({', '.join(_TRUE)} / {', '.join(_FALSE)}), got {value!r}"
    )


#: The most isolated processes at once: each holds a CUDA context (hundreds of MB of device
#: memory) and the driver creates them one at a time, so more than this only exhausts the GPU.
MAX_WORKERS = 64


def _workers(value: Any, where: str) -> int:
    if str(value).strip() == "auto":
        return min(os.cpu_count() or 1, AUTO_WORKERS)
    what = f"a number of processes from 1 to {MAX_WORKERS}, or 'auto'"
    workers = parse_int(value, where, minimum=1, what=what)
    if workers > MAX_WORKERS:
        raise ConfigError(f"{where}: expected {what}, got {workers}")
    return workers


def _explore(value: Any, where: str) -> int:
    return parse_int(value, where, minimum=0, what="a number of specs (0: off)")


def _cudnn_plans(value: Any, where: str) -> int:
    what = f"a number of cuDNN plan slots from 1 to {MAX_CUDNN_PLANS}"
    slots = parse_int(value, where, minimum=1, what=what)
    if slots > MAX_CUDNN_PLANS:
        raise ConfigError(f"{where}: expected {what}, got {slots}")
    return slots


@dataclass(frozen=True)
class Settings:
    """Everything the options and ini keys decide for one run."""

    orders: Setting[tuple[str, ...]]
    orders_explicit: bool
    #: The scenarios this run can select (shipped and registered): ``--trtctx-order``'s choices.
    registry: Registry
    device: Setting[int]
    #: ``--trtctx-backend``: one backend, or several, each test that builds engines running
    #: once per backend (settings/backend_axis.py).
    backends: Setting[tuple[str, ...]]
    isolate: Setting[str]
    timeout: Setting[float]
    workers: Setting[int]
    matrix: Setting[Path]
    cache_dir: Setting[Path]
    rebuild: Setting[bool]
    prebuild: Setting[bool]
    #: --trtctx-fast-contexts: a scenario's environment for speed alone is set (opt-in).
    fast_contexts: Setting[bool]
    trace: Setting[bool]
    report: Setting[Path] | None
    html: Setting[Path] | None
    baseline: Setting[Path] | None
    baseline_keep: Setting[bool]
    explore: Setting[int]
    explore_db: Setting[Path]
    cudnn_plans: Setting[int]

    @property
    def active(self) -> bool:
        """True when the run selected an order: only then does the plugin change how tests run."""
        return self.orders_explicit

    @property
    def backend(self) -> Setting[str]:
        """The first backend listed: every test's where the run lists one."""
        return Setting(self.backends.value[0], self.backends.source)

    @property
    def single_order(self) -> str | None:
        """The order every test of the run meets when exactly one was selected, else None."""
        if self.active and len(self.orders.value) == 1:
            return self.orders.value[0]
        return None


SETTINGS = pytest.StashKey[Settings]()


def settings_of(config: pytest.Config) -> Settings:
    """The run's settings, resolved once at configure time."""
    return config.stash[SETTINGS]


def with_marker(setting: Setting[T], marked: T | None, where: str) -> Setting[T]:
    """Precedence's first rule: a marker on the test wins over option, ini key and default."""
    return setting if marked is None else Setting(marked, where)


def _path_parser(config: pytest.Config) -> Callable[[Any, str], Path]:
    """A relative path is taken from where pytest was started when it came from the command
    line, from the rootdir when it came from the ini file."""

    def parse(value: Any, where: str) -> Path:
        if not str(value).strip():
            raise ConfigError(f"{where}: empty value; expected a path")
        path = Path(str(value)).expanduser()
        if not path.is_absolute():
            base = config.invocation_params.dir if where.startswith("option") else config.rootpath
            path = Path(base) / path
        return path

    return parse


def _optional_path(config: pytest.Config, name: str) -> Setting[Path] | None:
    raw = _raw(config, BY_NAME[name])
    return None if raw is None else Setting(_path_parser(config)(raw[0], raw[1]), raw[1])


def _writable(setting: Setting[Path] | None, *, folder: bool) -> Setting[Path] | None:
    """An output path is checked before any test runs: a run must not end in a path it cannot
    write its results to."""
    if setting is not None:
        problem = path_problem(setting.value, folder=folder)
        if problem is not None:
            raise ConfigError(f"{setting.source}: {problem}")
    return setting


def xdist_controller(config: pytest.Config) -> bool:
    """This process is pytest-xdist's controller: it hands tests to its workers, runs none."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def _in_xdist(config: pytest.Config) -> bool:
    return xdist_controller(config) or hasattr(config, "workerinput")


def _debugger(config: pytest.Config) -> str:
    """The debugger flag of the run (``--pdb``, ``--trace``), or ``""``."""
    for flag, dest in (("--pdb", "usepdb"), ("--trace", "trace")):
        if getattr(config.option, dest, False):
            return flag
    return ""


def resolve(config: pytest.Config) -> Settings:
    """Resolve every setting from options, ini keys and defaults; raise ConfigError if bad."""
    registry = registry_of(config)
    raw = _raw(config, BY_NAME["trtctx_order"])
    if raw is None:
        orders: Setting[tuple[str, ...]] = Setting(DEFAULT_ORDERS, "default")
    else:
        orders = Setting(parse_orders(raw[0], raw[1], registry), raw[1])
    explicit = raw is not None

    def device_index(value: Any, where: str) -> int:
        return parse_int(value, where, minimum=0, what="a device index >= 0")

    def isolate_mode(value: Any, where: str) -> str:
        return parse_choice(value, where, ISOLATE_MODES)

    isolate = _setting(config, "trtctx_isolate", isolate_mode, "test" if explicit else "none")
    if isolate.value == "none" and len(orders.value) > 1:
        raise ConfigError(
            MSG_NONE_ONE_ORDER.format(
                where=isolate.source, count=len(orders.value), orders=", ".join(orders.value)
            )
        )
    debugger = _debugger(config)
    if isolate.value != "none" and debugger:
        raise ConfigError(MSG_DEBUGGER_ISOLATED.format(flag=debugger, where=isolate.source))
    if isolate.value == "order" and _in_xdist(config):
        raise ConfigError(
            f"{isolate.source}: --trtctx-isolate=order runs each order's tests in one process, "
            "but xdist hands each -n worker tests of any order; use --trtctx-isolate=test with "
            "-n (each test forked from its xdist worker), or drop -n (--trtctx-workers runs "
            "processes in parallel)."
        )
    prebuild = _setting(config, "trtctx_prebuild", parse_flag, False)
    if prebuild.value and isolate.value == "test":
        raise ConfigError(
            f"{prebuild.source}: --trtctx-prebuild builds an order's engines ahead of its tests "
            "in one process; with --trtctx-isolate=test each test has a process of its own and "
            f"meets the order fresh already ({isolate.source}): use --trtctx-isolate=order"
        )
    path = _path_parser(config)
    explore = _setting(config, "trtctx_explore", _explore, 0)
    explore_db = _setting(
        config, "trtctx_explore_db", path, Path(config.rootpath) / ".hypothesis" / "trtctx"
    )
    if explore.value:
        _writable(explore_db, folder=True)
    workers = _setting(config, "trtctx_workers", _workers, _workers("auto", "default"))
    if workers.source == "default":
        workers = Setting(workers.value, f"auto: the CPU count, at most {AUTO_WORKERS}")
    return Settings(
        orders=orders,
        orders_explicit=explicit,
        registry=registry,
        device=_setting(config, "trtctx_device", device_index, 0),
        backends=_backends(config),
        isolate=isolate,
        timeout=_setting(config, "trtctx_timeout", parse_timeout, DEFAULT_TIMEOUT),
        workers=workers,
        matrix=_setting(config, "trtctx_matrix", path, default_matrix_path(config.rootpath)),
        cache_dir=_setting(config, "trtctx_cache_dir", path, default_cache_dir()),
        rebuild=_setting(config, "trtctx_rebuild", parse_flag, False),
        prebuild=prebuild,
        fast_contexts=_setting(config, "trtctx_fast_contexts", parse_flag, False),
        trace=_setting(config, "trtctx_trace", parse_flag, False),
        report=_writable(_optional_path(config, "trtctx_report"), folder=False),
        html=_writable(_optional_path(config, "trtctx_html"), folder=False),
        baseline=_writable(_optional_path(config, "trtctx_baseline"), folder=True),
        baseline_keep=_setting(config, "trtctx_baseline_keep", parse_flag, False),
        explore=explore,
        explore_db=explore_db,
        cudnn_plans=_setting(config, "trtctx_cudnn_plans", _cudnn_plans, DEFAULT_CUDNN_PLANS),
    )
