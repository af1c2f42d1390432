"""The option table: every option of the plugin, its kind, its help, and its ini twin.

Each row says how pytest takes the option (``list``, ``flag``, ``value``); parsing, validation
and precedence are :mod:`.config`'s. Only names and defaults are imported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from ..messages import ALL_HAZARDS, ALL_ORDERS, BACKENDS, INSTALL_TRACE
from ..scenarios import HAZARDS, ORDERS

DEFAULT_TIMEOUT = 300.0
#: ``--trtctx-workers=auto``: at most this many isolated processes at once. Every isolated test
#: creates a CUDA context and the driver serialises context creation machine-wide, so workers
#: beyond a few only wait longer for their contexts (docs/isolation.md has the measurements).
AUTO_WORKERS = 4
#: No order unless one is selected: a test that asks for one is then skipped as [no-order]
#: with how to select one, and a report records no order (an order is a promise: nothing ran
#: one's recipe).
DEFAULT_ORDERS: tuple[str, ...] = ()
#: cuDNN plan slots per spec (plan_slots.py): above the most plans cuDNN's heuristics offered for
#: one spec of a probe (docs/orders.md, "Vendor backends"), so that every plan runs.
DEFAULT_CUDNN_PLANS = 64
MAX_CUDNN_PLANS = 1024


#: How pytest takes an option: ``list`` repeats and appends, ``flag`` is a switch (its ini twin
#: is a boolean), ``value`` takes one value. Parsing and validation are :func:`resolve`'s.
Kind = Literal["list", "flag", "value"]


@dataclass(frozen=True)
class Option:
    """One row of the option table: the dest and ini key (the same name), kind and help."""

    name: str
    kind: Kind
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option(
        "trtctx_order",
        "list",
        "CUDA init order(s) to run tests under, comma separated or repeated: "
        + ", ".join(ORDERS)
        + f", or '{ALL_ORDERS}' (every init order); context hazards: "
        + ", ".join(HAZARDS)
        + f", or '{ALL_HAZARDS}'; or a scenario a conftest.py or plugin registered "
        "(pytest_trtctx_scenarios hook). Default: none: the plugin stays out of the way, and a "
        "test that asks for an order (trtctx_order) is skipped as [no-order] with how to select "
        "one.",
    ),
    Option("trtctx_device", "value", "CUDA device index (default 0)."),
    Option(
        "trtctx_backend",
        "value",
        "Engine backend: "
        + ", ".join(BACKENDS)
        + " (default auto); or several, comma-separated (cuda,triton,cudnn; 'vendors': every "
        "vendor backend installed here): each test that builds engines runs once per backend, "
        "the first keeping its ids and each other adding its name after the order's.",
    ),
    Option(
        "trtctx_cudnn_plans",
        "value",
        "With --trtctx-backend=cudnn: plan slots per spec, plan0..planN-1; each runs the "
        "execution plan of its index that cuDNN's heuristics offer, a slot past them skips "
        f"(default {DEFAULT_CUDNN_PLANS}).",
    ),
    Option(
        "trtctx_isolate",
        "value",
        "Process isolation: none (apply one order once in this process), order (one fresh "
        "process per order), test (one fresh process per test). Default: test when an order is "
        "selected, else none.",
    ),
    Option(
        "trtctx_timeout",
        "value",
        f"Seconds a test may make no progress in an isolated process before it is killed and "
        f"reported as hung (default {DEFAULT_TIMEOUT:g}; 0 disables).",
    ),
    Option(
        "trtctx_workers",
        "value",
        f"Isolated processes run at once: a number or 'auto' (default: the CPU count, at most "
        f"{AUTO_WORKERS}, since the CUDA driver serialises context creation).",
    ),
    Option(
        "trtctx_matrix",
        "value",
        "Engine matrix file (default: engines/conv_matrix.toml under the rootdir).",
    ),
    Option(
        "trtctx_rebuild",
        "flag",
        "Empty the kernel and engine caches under --trtctx-cache-dir at session start, so every "
        "cubin and engine is built anew in this run.",
    ),
    Option(
        "trtctx_prebuild",
        "flag",
        "Build the engines of all of an order's tests right after its recipe, before any of them "
        "runs (best with --trtctx-isolate=order): every engine meets the order fresh, and the "
        "order costs one CUDA context instead of one per test.",
    ),
    Option(
        "trtctx_fast_contexts",
        "flag",
        "Where a scenario's tests each make a CUDA context (context-destroyed), run its "
        "processes with CUDA_DEVICE_MAX_CONNECTIONS=1 unless the environment sets it (a value "
        "of yours is kept): one hardware queue a context, made and destroyed 2-3x faster. Your "
        "tests in those processes see it too (their streams share one queue), so it is off by "
        "default; the main job (./dev matrix) turns it on; the header says when it is on.",
    ),
    Option(
        "trtctx_trace",
        "flag",
        "Trace CUDA contexts with CUPTI in each test's process: every context made or made "
        "current, module loaded and kernel launched, with the test's line that did it; a launch "
        "in another context than its kernel's module is named in the failure and the report. "
        f"Needs cupti-python: {INSTALL_TRACE}.",
    ),
    Option(
        "trtctx_baseline",
        "value",
        "Folder of output baselines per environment fingerprint: an output that differs from "
        "this environment's baseline fails its test; one that differs from another "
        "environment's (an upgrade) is reported. New entries are recorded at session end.",
    ),
    Option(
        "trtctx_baseline_keep",
        "flag",
        "Keep the outputs themselves in the baseline too, so a difference comes with the "
        "largest absolute difference and where it is.",
    ),
    Option(
        "trtctx_explore",
        "value",
        "Spec exploration: the trtctx_explore fixture runs its check on this many conv specs "
        "generated by hypothesis, and shrinks a failure to a minimal, ready-to-paste matrix "
        "entry (default 0: tests that use it are skipped).",
    ),
    Option(
        "trtctx_explore_db",
        "value",
        "hypothesis example database for exploration (default .hypothesis/trtctx under the "
        "rootdir); failing examples are replayed first next time.",
    ),
    Option(
        "trtctx_report",
        "value",
        "Write a JSON report to this file: environment fingerprint, and per test the order, "
        "backend, spec, outcome, failed check, messages, output SHA-256 and timings "
        "(docs/report.md). Compare two with: pytest-trtctx diff OLD.json NEW.json",
    ),
    Option(
        "trtctx_html",
        "value",
        "Write a self-contained HTML page of the run to this file: a grid per backend of "
        "scenarios by specs coloured by outcome, each cell opening its test's record. From saved "
        "reports: pytest-trtctx html REPORT.json -o PAGE.html",
    ),
    Option(
        "trtctx_cache_dir",
        "value",
        "Folder for compiled kernels and engines (default $TRTCTX_CACHE_DIR, else "
        "$XDG_CACHE_HOME/pytest-trtctx, else ~/.cache/pytest-trtctx).",
    ),
)
BY_NAME = {option.name: option for option in OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    """Register every option and its ini twin, as its row says."""
    group = parser.getgroup("trtctx", "CUDA context init orders (pytest-trtctx)")
    for option in OPTIONS:
        if option.kind == "list":
            group.addoption(
                option.flag, dest=option.name, action="append", default=[], help=option.help
            )
        elif option.kind == "flag":
            group.addoption(
                option.flag, dest=option.name, action="store_true", default=False, help=option.help
            )
        else:
            group.addoption(option.flag, dest=option.name, default=None, help=option.help)
        # Every ini value is read as text and parsed here, so that a bad one is reported with
        # its key and file like a bad option (pytest's own bool parsing names neither).
        parser.addini(option.name, option.help, default=None)
