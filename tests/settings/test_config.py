"""Options, ini keys, precedence and the errors for bad values (through pytest, in subprocesses)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from pytest_trtctx.messages import (
    ALL_HAZARDS,
    ALL_ORDERS,
    BACKENDS,
    INSTALL_XDIST,
    ISOLATE_MODES,
    MSG_BAD_VALUE,
    MSG_DEBUGGER_ISOLATED,
    MSG_EMPTY_VALUE,
    MSG_NONE_ONE_ORDER,
)
from pytest_trtctx.scenarios import HAZARDS, ORDERS, SCENARIOS
from pytest_trtctx.settings.config import VENDORS

from ..conftest import cpu_orders, needs_package, run_pytest

needs_xdist = needs_package("xdist", "pytest-xdist", INSTALL_XDIST)

ALLOWED_ORDERS = ", ".join((*SCENARIOS, ALL_ORDERS, ALL_HAZARDS))


def test_unknown_order_on_the_command_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, "--trtctx-order=torch-first,gpu-first")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*"
            + MSG_BAD_VALUE.format(
                where="option --trtctx-order", value="gpu-first", allowed=ALLOWED_ORDERS
            )
        ]
    )


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--trtctx-order=", MSG_EMPTY_VALUE.format(where="{where}", allowed=ALLOWED_ORDERS)),
        (
            "--trtctx-backend=",
            MSG_EMPTY_VALUE.format(where="{where}", allowed=", ".join((*BACKENDS, VENDORS))),
        ),
        (
            "--trtctx-isolate=",
            MSG_EMPTY_VALUE.format(where="{where}", allowed=", ".join(ISOLATE_MODES)),
        ),
        ("--trtctx-workers=", "{where}: expected a number of processes from 1 to 64, or 'auto'*"),
        ("--trtctx-matrix=", "{where}: empty value; expected a path"),
    ],
)
def test_an_empty_option_value_says_what_is_allowed(
    pytester: pytest.Pytester, arg: str, message: str
) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, arg)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*" + message.format(where="option " + arg.rstrip("="))])


@pytest.mark.parametrize(
    ("env", "ini", "args", "where"),
    [
        ("-v --trtctx-order=bogus", None, [], "option --trtctx-order (in PYTEST_ADDOPTS)"),
        (None, "--trtctx-order bogus", [], "option --trtctx-order (in addopts of tox.ini)"),
        (
            None,
            None,
            ["-o", "addopts=--trtctx-order=bogus"],
            "option --trtctx-order (in -o addopts)",
        ),
        # A list option takes every place's values: each place is named.
        (
            None,
            "--trtctx-order=bogus",
            ["--trtctx-order=torch-first"],
            "option --trtctx-order (on the command line and in addopts of tox.ini)",
        ),
    ],
)
def test_an_option_given_in_pytest_addopts_or_the_ini_addopts_says_so(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    env: str | None,
    ini: str | None,
    args: list[str],
    where: str,
) -> None:
    pytester.makepyfile("def test_x(): pass")
    if env is not None:
        monkeypatch.setenv("PYTEST_ADDOPTS", env)
    pytester.makeini(f"[pytest]\naddopts = {ini}\n" if ini else "[pytest]\n")
    result = run_pytest(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*" + MSG_BAD_VALUE.format(where=where, value="bogus", allowed=ALLOWED_ORDERS)]
    )


def test_a_single_value_option_names_the_place_whose_value_won(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line's value wins over PYTEST_ADDOPTS's (pytest puts it last)."""
    pytester.makepyfile("def test_x(): pass")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--trtctx-isolate=order")
    result = run_pytest(pytester, "--trtctx-order=torch-first", "--trtctx-isolate=bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*"
            + MSG_BAD_VALUE.format(
                where="option --trtctx-isolate", value="bogus", allowed=", ".join(ISOLATE_MODES)
            )
        ]
    )


@pytest.mark.parametrize("how", ["empty ini value", "-o trtctx_order="])
def test_an_empty_ini_value_or_o_clears_the_key(pytester: pytest.Pytester, how: str) -> None:
    """pytest's way to clear an ini key (``-o addopts=``): the default applies, here no order,
    and a test that asks for one says how to select one."""
    value = "" if how == "empty ini value" else "torch-first"
    pytester.makeini(f"[pytest]\ntrtctx_order = {value}\n")
    pytester.makepyfile("def test_x(trtctx_order): pass")
    args = ["-o", "trtctx_order="] if how.startswith("-o") else []
    result = run_pytest(pytester, "-rs", *args)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no init order selected*"])


def test_unknown_order_in_the_ini_file_names_the_key_and_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrtctx_order = torch-first bogus\n")
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(
        pytester,
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*"
            + MSG_BAD_VALUE.format(
                where="ini key trtctx_order in tox.ini", value="bogus", allowed=ALLOWED_ORDERS
            )
        ]
    )


def test_a_bad_value_given_with_dash_o_names_the_command_line(pytester: pytest.Pytester) -> None:
    """-o KEY=VALUE overrides the ini file: its bad value is said to come from -o, not from the
    ini file (nor from an ini key where no ini file exists)."""
    pytester.makeini("[pytest]\ntrtctx_order = torch-first\n")
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, "-o", "trtctx_order=bogus")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*" + MSG_BAD_VALUE.format(where="-o trtctx_order", value="bogus", allowed=ALLOWED_ORDERS)]
    )


@pytest.mark.parametrize(
    ("flag", "value", "allowed"),
    [
        ("--trtctx-backend", "tensorflow", ", ".join((*BACKENDS, VENDORS))),
        ("--trtctx-isolate", "process", ", ".join(ISOLATE_MODES)),
    ],
)
def test_unknown_choice(pytester: pytest.Pytester, flag: str, value: str, allowed: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, f"{flag}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*" + MSG_BAD_VALUE.format(where=f"option {flag}", value=value, allowed=allowed)]
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--trtctx-device=-1"], "option --trtctx-device: expected a device index >= 0, got -1"),
        (["--trtctx-device=first"], "option --trtctx-device: expected a device index >= 0, got*"),
        (["--trtctx-timeout=soon"], "option --trtctx-timeout: expected a number of seconds*soon*"),
        (["--trtctx-timeout=-3"], "option --trtctx-timeout: expected a number of seconds >= 0*"),
        (["--trtctx-workers=0"], "option --trtctx-workers: expected a number of processes from 1*"),
    ],
)
def test_bad_numbers(pytester: pytest.Pytester, args: list[str], expected: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*" + expected])


def test_isolate_none_takes_one_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, "--trtctx-order=torch-first,trt-first", "--trtctx-isolate=none")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*"
            + MSG_NONE_ONE_ORDER.format(
                where="option --trtctx-isolate", count=2, orders="torch-first, trt-first"
            )
        ]
    )


def test_all_expands_to_every_order_in_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_o(trtctx_order): pass")
    result = run_pytest(pytester, "--trtctx-order=all", "--collect-only", "-q")
    result.stdout.fnmatch_lines([f"*test_o[[]{o}[]]" for o in ORDERS])


def test_option_beats_ini_and_header_says_where(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrtctx_order = trt-first\ntrtctx_isolate = order\n")
    pytester.makepyfile("def test_o(trtctx_order): pass")
    result = run_pytest(pytester, *cpu_orders(pytester), "--trtctx-order=driver-first", "-v")
    result.stdout.fnmatch_lines(
        [
            "trtctx: orders driver-first (option --trtctx-order); "
            "isolate order (ini key trtctx_isolate in tox.ini, * workers (auto: *)); "
            "device 0; backend auto (default)*",
            "*test_o[[]driver-first[]] PASSED*",
        ]
    )
    assert "trt-first]" not in result.stdout.str()


def test_ini_used_when_no_option(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrtctx_order = trt-first\n")
    pytester.makepyfile("def test_o(trtctx_order): pass")
    result = run_pytest(pytester, *cpu_orders(pytester), "-v")
    result.stdout.fnmatch_lines(
        ["trtctx: orders trt-first (ini key trtctx_order in tox.ini); isolate test (default, *"]
    )
    result.assert_outcomes(passed=1)


def test_workers_auto_is_capped_and_a_number_is_kept(pytester: pytest.Pytester) -> None:
    """auto is min(CPU count, AUTO_WORKERS): the driver serialises CUDA context creation."""
    from pytest_trtctx.settings.options import AUTO_WORKERS

    pytester.makepyfile("def test_o(trtctx_order): pass")
    for cpus, expected in ((AUTO_WORKERS * 4, AUTO_WORKERS), (2, 2)):
        # The conftest loads before the plugin resolves its settings (pytest_configure).
        pytester.makeconftest(f"import os\nos.cpu_count = lambda: {cpus}\n")
        result = run_pytest(pytester, "--trtctx-order=torch-first", "--co")
        result.stdout.fnmatch_lines(
            [f"*isolate test (default, {expected} workers (auto: the CPU count, at most *))*"]
        )
    result = run_pytest(pytester, "--trtctx-order=torch-first", "--trtctx-workers=7", "--co")
    result.stdout.fnmatch_lines(["*isolate test (default, 7 workers (option --trtctx-workers))*"])


def test_inactive_plugin_leaves_a_suite_alone(pytester: pytest.Pytester) -> None:
    """Installed but not asked for: no fork, no probe, tests run in the pytest process."""
    pytester.makepyfile(
        """
        import os
        PID = os.getpid()
        def test_same_process():
            assert os.getpid() == PID
        """
    )
    result = run_pytest(pytester, "-v")
    result.stdout.fnmatch_lines(["trtctx: no order selected*"])
    result.assert_outcomes(passed=1)


def test_backend_marker_beats_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        @pytest.mark.trtctx_backend("nonsense")
        def test_x(): pass
        """
    )
    result = run_pytest(pytester, "--trtctx-backend=cuda")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*"
            + MSG_BAD_VALUE.format(
                where="marker trtctx_backend on test_backend_marker_beats_option.py::test_x",
                value="nonsense",
                allowed=", ".join(BACKENDS),
            )
        ]
    )


@needs_xdist
def test_xdist_with_one_process_per_order_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(
        pytester, "-p", "xdist", "-n", "2", "--trtctx-order=torch-first", "--trtctx-isolate=order"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--trtctx-isolate=order runs each order's tests in one process, but xdist hands*"]
    )


@needs_xdist
def test_xdist_workers_fork_each_test(pytester: pytest.Pytester) -> None:
    """pytest -n N --trtctx-order=...: each xdist worker is a fresh interpreter that never
    touched CUDA, and forks every test it is handed, as pytest-forked does under xdist."""
    pytester.makepyfile(
        """
        import os

        def test_a(trtctx_order, record_property):
            assert os.environ["TRTCTX_SCENARIO"] == trtctx_order
            record_property("pids", [os.getpid(), os.getppid()])

        def test_b(trtctx_order, record_property):
            record_property("pids", [os.getpid(), os.getppid()])
        """
    )
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "-p",
        "xdist",
        "-n",
        "2",
        "--trtctx-order=torch-first,trt-first",
        "--junitxml=out.xml",
    )
    result.assert_outcomes(passed=4)
    pids = re.findall(
        r'name="pids" value="\[(\d+), (\d+)\]"', (pytester.path / "out.xml").read_text()
    )
    assert len(pids) == 4 and len({pid for pid, _parent in pids}) == 4, pids
    parents = {parent for _pid, parent in pids}
    assert len(parents) <= 2 and not {pid for pid, _ in pids} & parents  # forked from the workers
    result.stdout.fnmatch_lines(["*= trtctx summary =*", "torch-first * 2 * 0 * 0 * 0"])


def test_help_documents_every_option(pytester: pytest.Pytester) -> None:
    result = run_pytest(pytester, "--help")
    for flag in (
        "--trtctx-order",
        "--trtctx-device",
        "--trtctx-backend",
        "--trtctx-isolate",
        "--trtctx-timeout",
        "--trtctx-workers",
        "--trtctx-matrix",
        "--trtctx-cache-dir",
    ):
        result.stdout.fnmatch_lines([f"*{flag}*"])
    for key in ("trtctx_order", "trtctx_isolate", "trtctx_timeout"):
        result.stdout.fnmatch_lines([f"*{key} *"])


def test_a_malformed_matrix_is_a_usage_error_naming_file_entry_and_field(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(
        ".toml",
        bad_matrix="""
        schema = 1
        [[conv]]
        name = "ok"
        batch = 1
        in_channels = 4
        out_channels = 8
        height = 9
        width = 9
        kernel = 3
        stride = 0
        padding = 1
        dilation = 1
        groups = 1
        dtype = "float32"
        """,
    )
    pytester.makepyfile("def test_spec(trtctx_spec): pass")
    result = run_pytest(pytester, "--trtctx-matrix=bad_matrix.toml")
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error: nothing runs
    result.stdout.fnmatch_lines(
        [
            "*engine matrix (option --trtctx-matrix): *bad_matrix.toml: [[][[]conv[]][]] #1 ('ok')"
            "*field 'stride': expected a positive integer or [[]h, w[]], got 0*"
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_matrix_parametrises_specs_by_name(pytester: pytest.Pytester) -> None:
    import shutil
    from pathlib import Path

    shutil.copy(Path(__file__).parents[2] / "engines" / "conv_matrix.toml", pytester.path)
    pytester.makepyfile("def test_spec(trtctx_spec): assert trtctx_spec.name")
    result = run_pytest(pytester, "--trtctx-matrix=conv_matrix.toml", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_spec[[]k3s1d1g1_f32_b1_17x19[]]*"])


def test_rebuild_empties_only_the_plugins_caches(pytester: pytest.Pytester) -> None:
    cache = pytester.path / "cache"
    for sub in ("cubin", "engines"):
        (cache / sub).mkdir(parents=True)
        (cache / sub / "old.bin").write_bytes(b"stale")
    (cache / "mine.txt").write_text("not the plugin's")
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, f"--trtctx-cache-dir={cache}")
    result.assert_outcomes(passed=1)
    assert (cache / "cubin" / "old.bin").exists()  # no rebuild asked: untouched
    key = "ab" * 32
    (cache / "cubin" / f"{key}.cubin").write_bytes(b"\x7fELF...")
    (cache / "engines" / f"{key}.plan").write_bytes(b"TRTCTXEN...")
    result = run_pytest(pytester, f"--trtctx-cache-dir={cache}", "--trtctx-rebuild")
    result.assert_outcomes(passed=1)
    assert not (cache / "cubin" / f"{key}.cubin").exists()
    assert not (cache / "engines" / f"{key}.plan").exists()
    # Files the plugin did not write stay, and so do the folders that hold them.
    assert (cache / "cubin" / "old.bin").read_bytes() == b"stale"
    assert (cache / "mine.txt").read_text() == "not the plugin's"


def test_engine_cache_folder_is_the_one_rebuild_empties() -> None:
    from pytest_trtctx import storage
    from pytest_trtctx.engines import cache as engine_cache

    assert engine_cache.entry_path(Path("/c"), "k").parent.name in storage.CACHE_SUBDIRS


@needs_xdist
def test_isolate_none_composes_with_xdist(pytester: pytest.Pytester) -> None:
    """With -n each xdist worker is a fresh process that applies the one order at its start."""
    pytester.makepyfile(
        """
        import os

        def test_a(trtctx_order):
            assert os.environ.get("TRTCTX_SCENARIO") == "trt-first"
            assert os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw")

        def test_b(trtctx_order):
            assert os.environ["TRTCTX_SCENARIO"] == trtctx_order
        """
    )
    pytester.makeconftest(
        """
        import os, sys
        def pytest_sessionfinish(session):
            if not hasattr(session.config, "workerinput"):
                from pytest_trtctx.scenarios.process import process_of
                applied = process_of(session.config).state is not None
                print("CONTROLLER APPLIED:", applied, file=sys.stderr)
        """
    )
    result = run_pytest(
        pytester,
        *cpu_orders(pytester),
        "-p",
        "xdist",
        "-n",
        "2",
        "--trtctx-order=trt-first",
        "--trtctx-isolate=none",
    )
    result.assert_outcomes(passed=2)
    result.stderr.fnmatch_lines(["CONTROLLER APPLIED: False"])


def test_prebuild_needs_a_process_per_order(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = run_pytest(pytester, "--trtctx-order=trt-first", "--trtctx-prebuild")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: option --trtctx-prebuild: --trtctx-prebuild builds an order's engines ahead*"]
    )


def test_all_is_the_init_orders_and_hazards_the_context_hazards() -> None:
    from pytest_trtctx.scenarios import Registry
    from pytest_trtctx.settings.config import parse_orders

    registry = Registry()
    assert parse_orders("all", "here", registry) == ORDERS
    assert parse_orders("hazards", "here", registry) == HAZARDS
    assert parse_orders(["torch-first", "hazards"], "here", registry) == (ORDERS[0], *HAZARDS)
    assert not set(HAZARDS) & set(parse_orders("all", "here", registry))


@pytest.mark.parametrize("isolate", ["test", "order"])
@pytest.mark.parametrize("flag", ["--pdb", "--trace"])
def test_the_debugger_in_a_forked_worker_is_refused_at_start(
    pytester: pytest.Pytester, flag: str, isolate: str
) -> None:
    pytester.makepyfile("def test_fail():\n    assert 0\n")
    result = run_pytest(pytester, f"--trtctx-isolate={isolate}", flag)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = MSG_DEBUGGER_ISOLATED.format(flag=flag, where="option --trtctx-isolate")
    result.stderr.fnmatch_lines(["*" + message])
    result.stdout.no_fnmatch_line("*died*")
    # In the pytest process the debugger works as pytest's own: it stops at the failure.
    args = ("-p", "pytest_trtctx.plugin", "--trtctx-isolate=none", "--pdb")
    result = pytester.run(sys.executable, "-m", "pytest", *args, stdin=b"c\n", timeout=120)
    result.stdout.fnmatch_lines(["*entering PDB*", "*1 failed*"])


def test_with_no_order_selected_help_and_collection_say_a_test_that_asks_is_skipped(
    pytester: pytest.Pytester,
) -> None:
    """The documented default is what happens: no order, the asking test [no-order]."""
    pytester.makepyfile("def test_x(trtctx_order): pass")
    collected = run_pytest(pytester, "--co", "-q")
    collected.stdout.fnmatch_lines(["test_*.py::test_x[[]no-order[]]"])
    # argparse may wrap a line after a hyphen ("[no-" / "order]"): joined again here.
    text = re.sub(r"-\s+", "-", " ".join(run_pytest(pytester, "--help").stdout.str().split()))
    order_help = text.partition("--trtctx-order=")[2].partition("--trtctx-device")[0]
    assert "Default: none" in order_help and "[no-order]" in order_help, order_help
    assert "torch-first for tests" not in order_help


@needs_xdist
def test_xdist_progress_counts_each_test_once(pytester: pytest.Pytester) -> None:
    """A test forked from an xdist worker collects itself again after the recipe; xdist's link to
    the controller is silenced there, so the controller's count stays the run's (it read 800 %
    for 8 tests when the forked collections' node ids reached it)."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(8))
        def test_x(trtctx_order, n):
            pass
        """
    )
    result = run_pytest(
        pytester, *cpu_orders(pytester), "-p", "xdist", "-n", "2", "--trtctx-order=torch-first"
    )
    result.assert_outcomes(passed=8)
    shown = [int(p) for p in re.findall(r"\[\s*(\d+)%\]", result.stdout.str())]
    assert shown and max(shown) == 100, shown
