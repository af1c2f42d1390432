"""Shared helpers for the plugin's own tests."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_trtctx.cuda.probe import cuda_untouched, machine
from pytest_trtctx.messages import MSG_NEEDS_PACKAGE, MSG_NO_DRIVER


def gpu_skip_reason() -> str | None:
    """None when a CUDA GPU is usable here; else the precise reason (the probe runs in a child
    process, so asking never initialises CUDA in this one)."""
    info = machine()
    return None if info.has_gpu else MSG_NO_DRIVER.format(why=info.why_no_gpu)


requires_gpu = pytest.mark.skipif(gpu_skip_reason() is not None, reason=str(gpu_skip_reason()))


def two_gpus_skip_reason() -> str | None:
    """None when two CUDA GPUs are usable here; else why not."""
    why = gpu_skip_reason()
    if why is not None:
        return why
    count = len(machine().devices)
    return None if count >= 2 else f"needs two CUDA GPUs; this machine has {count}"


requires_two_gpus = pytest.mark.skipif(
    two_gpus_skip_reason() is not None, reason=str(two_gpus_skip_reason())
)


def needs_package(module: str, package: str, install: str) -> pytest.MarkDecorator:
    """Skips a test that needs an optional package where it is missing, with the line that
    installs it. Decided in the process running the tests, before any child is spawned, and by
    ``importlib.util.find_spec`` of the top-level name: nothing is imported, so asking never
    loads a CUDA library (cupti's import loads libcupti)."""
    missing = importlib.util.find_spec(module.partition(".")[0]) is None
    return pytest.mark.skipif(
        missing, reason=MSG_NEEDS_PACKAGE.format(package=package, install=install)
    )


#: A pytest run under test that outlives this is a hang of its own: fail, never wait forever.
SUBPROCESS_TIMEOUT = 240


@pytest.fixture(autouse=True)
def _only_this_plugin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs under pytester load this plugin alone: no other installed plugin (the GPU host
    has several) can change an outcome or import torch behind the test's back."""
    if "pytester" in request.fixturenames:
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


#: The guard's failure: a test initialised CUDA (or opened the driver) in the process running it.
MSG_TEST_TOUCHED_CUDA = (
    "{nodeid} left CUDA initialised in the process that runs the tests ({how}); run what touches "
    "CUDA in a child (in_child, run_pytest), or mark the test initialises_cuda(why)"
)

#: Marks a test whose body calls cuInit on a GPU host (through a library, not by choice): the
#: guard does not blame it. (Sending all of them to one xdist worker with xdist_group and
#: --dist loadgroup would keep the other workers checkable, but pytest 9.2 silently breaks xdist's
#: groups: pytest-dev/pytest-xdist#1386.)
INITIALISES_CUDA = "initialises_cuda"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{INITIALISES_CUDA}(why): the test's body calls cuInit on a GPU host (why: what does); "
        "the CUDA-clean guard of tests/conftest.py does not blame it",
    )


@pytest.fixture(autouse=True)
def _leaves_cuda_untouched(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the first test after which this process is no longer provably CUDA-clean.

    These tests run in xdist workers that serve many tests: one that initialises CUDA here
    changes what every later test in the worker sees (NVRTC compiles and refused TensorRT-RTX
    builds call cuInit: docs/isolation.md). Only a test that found the process clean is
    blamed, so the report names the culprit once; a test marked initialises_cuda is exempt.
    """
    clean_before, _ = cuda_untouched()
    yield
    if clean_before and request.node.get_closest_marker(INITIALISES_CUDA) is None:
        clean_after, how = cuda_untouched()
        if not clean_after:
            pytest.fail(MSG_TEST_TOUCHED_CUDA.format(nodeid=request.node.nodeid, how=how))


def in_child(work: Callable[..., Any], *args: Any) -> Any:
    """``work(*args)`` in a spawned child (never forked), its result returned: for tests whose
    body initialises CUDA, which the process running the tests must not. ``work`` must be
    importable (a module-level function); its arguments and result picklable. A child that hangs
    is killed and fails the test (``race`` with one process), never waited on forever."""
    return race(work, 1, *args)[0]


#: A plugin for runs under pytester that marks an order applied without running its recipe. It
#: stands in for a GPU where there is none, so that what the plugin does after the recipe (the
#: order gate, forked workers, known failures, the summary, the report) runs for real on CPU-only
#: tests, in CI too. The recipes themselves run on the GPU (test_process.py, test_runtime.py).
CPU_ORDERS = """
import os
import pytest_trtctx.isolation.worker as worker
from pytest_trtctx.scenarios import State
from pytest_trtctx.scenarios.process import process_of
from pytest_trtctx.settings.config import settings_of

def apply_without_cuda(config, order, culprit="", *, trace=False):
    scenario = settings_of(config).registry[order]
    state = State(scenario, 0, torch_device=0, engine_device=0)
    state.steps.append("recipe not run: a CPU-only test of the plugin")
    process_of(config).state = state
    os.environ["TRTCTX_SCENARIO"] = order
    return state

worker.apply_order = apply_without_cuda
"""


def cpu_orders(pytester: pytest.Pytester) -> tuple[str, str]:
    """Arguments that load :data:`CPU_ORDERS` into a run under pytester."""
    pytester.makepyfile(trtctx_cpu_orders=CPU_ORDERS)
    return ("-p", "trtctx_cpu_orders")


def modules_after(statement: str) -> list[str]:
    """The modules a fresh Python holds after running ``statement`` (the import under test)."""
    import json
    import subprocess
    import sys

    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def suite_report(tmp: Any, label: str, orders: str, select: str, *extra: str) -> dict[str, Any]:
    """The shipped suite's tests matching ``select`` under ``orders``, run from the clone with
    a JSON report (pytest's exit must be 0); the report."""
    import subprocess
    import sys
    from pathlib import Path

    from pytest_trtctx.records.report import load

    root = Path(__file__).resolve().parents[1]
    report = Path(tmp) / f"{label}.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/regression", "-q", "-p", "no:cacheprovider",
         f"--trtctx-order={orders}", f"--trtctx-report={report}", "-k", select, *extra],
        cwd=root, capture_output=True, text=True, check=False, timeout=SUBPROCESS_TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    return load(report)


def run_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``runpytest_subprocess`` with this plugin and a timeout: a hang fails, never waits."""
    return pytester.runpytest_subprocess(
        "-p", "pytest_trtctx.plugin", *args, timeout=SUBPROCESS_TIMEOUT
    )


def _race_child(
    work: Callable[..., Any], args: tuple[Any, ...], barrier: Any, results: Any
) -> None:
    try:
        barrier.wait(timeout=120)
        results.put((os.getpid(), work(*args), None))
    except BaseException as exc:
        results.put((os.getpid(), None, repr(exc)))


def race(work: Callable[..., Any], nproc: int, *args: Any) -> list[Any]:
    """``work(*args)`` in ``nproc`` processes released together by a barrier, so that they race
    (a cache written by several builders at once); returns each one's result. Spawned, never
    forked. Fails the test if any child raised or did not exit 0. ``work`` must be importable
    (a module-level function) and its arguments and result picklable."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(nproc)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_race_child, args=(work, args, barrier, results)) for _ in range(nproc)
    ]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=300) for _ in range(nproc)]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [err for _pid, _out, err in got if err is not None]
    assert not errors, errors
    assert [p.exitcode for p in procs] == [0] * nproc
    return [out for _pid, out, _err in got]


#: Two small entries of an engine matrix file (``engines/conv_matrix.toml``'s form) for the suites
#: run through pytester: a file is ``"schema = 1\n"`` and its entries.
MATRIX_A_F32 = """
[[conv]]
name = "a_f32"
batch = 1
in_channels = 4
out_channels = 8
height = 5
width = 7
kernel = 3
stride = 1
padding = 1
dilation = 1
groups = 1
dtype = "float32"
"""
MATRIX_B_F16 = """
[[conv]]
name = "b_f16"
batch = 1
in_channels = 4
out_channels = 4
height = 5
width = 5
kernel = 1
stride = 1
padding = 0
dilation = 1
groups = 2
dtype = "float16"
"""


def marked_suite(marked: str) -> str:
    """A suite for ``--trtctx-backend`` runs through pytester: a test of each matrix spec on the
    run's backend(s), the same with its marker naming ``marked``, and one that builds no engine
    of the matrix."""
    return f"""
import pytest

def test_conv(trtctx, trtctx_spec):
    trtctx.check_conv(trtctx_spec)

@pytest.mark.trtctx_backend("{marked}")
def test_marked(trtctx, trtctx_spec):
    trtctx.check_conv(trtctx_spec)

def test_own(trtctx):
    pass
"""
