"""context-destroyed: the engines a process builds share one context of their own until a run
destroys it (a context each cost every test a context made and destroyed, which the driver
serialises machine-wide). Sharing must give every test the outcome of a fresh process.

GPU tests run through subprocesses: this process must never initialise CUDA. The bookkeeping
(which engines a destroyed context takes with it, which run may use such an engine again) is
tested here on CPU with a fake backend: it calls no driver.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_trtctx.backends.base import with_plan
from pytest_trtctx.checks.outputs import Outputs
from pytest_trtctx.scenarios import Registry
from pytest_trtctx.scenarios.base import State
from pytest_trtctx.scenarios.process import Process
from pytest_trtctx.scenarios.runtime import Runtime

from ..conftest import requires_gpu, run_pytest, suite_report
from .fakes import SPEC, FakeBackend, engine_in


def test_a_destroyed_context_takes_every_engine_of_it_and_no_other() -> None:
    process = Process()
    ours, other = engine_in(5), engine_in(6)
    process.prebuilt = {("cuda", "a"): ours, ("cuda", "b"): other}
    copy = with_plan(engine_in(5), 1)  # a plan's engine: a copy of its details
    process.context_destroyed(5, [copy])
    assert ours.details.get("context_destroyed") and copy.details.get("context_destroyed")
    assert not other.details.get("context_destroyed")


@pytest.mark.parametrize("fixed", [False, True], ids=["plain", "fixed"])
def test_an_engine_of_a_destroyed_context_is_never_run_again(fixed: bool) -> None:
    """A prebuilt engine whose context an earlier run destroyed: its handles point into freed
    driver state (launching one crashed the process on a GPU), so a run, plain or fixed, builds
    its own; a plain run of context-destroyed then destroys that one's context right before."""
    state = State(Registry()["torch-first"], 0, 0, 0)  # builds where current: no driver
    process = Process(state)
    gone = engine_in(5)
    gone.details["context_destroyed"] = True
    process.prebuilt[("fake", SPEC.name)] = gone
    runtime = Runtime(state, "fake", None, Outputs(), process)
    runtime._backend = backend = FakeBackend()  # type: ignore[assignment]
    runtime.fix_context = fixed
    pytest.importorskip("torch", reason="the runtime's host tensors are torch's")
    engine = runtime.build(SPEC)
    assert engine is not gone
    assert backend.built == [engine]


def test_a_run_of_an_engine_not_of_the_live_shared_context_is_refused() -> None:
    """The scenario destroys only the live context its engines share: an engine built anywhere
    else (a test that built it with the backend itself) is refused with where it was built, and
    one whose context a run destroyed already (a test running it twice) with what to do, rather
    than its context destroyed underneath torch or a launch of freed state."""
    from pytest_trtctx.cuda.driver import ContextInfo
    from pytest_trtctx.errors import OrderError
    from pytest_trtctx.scenarios.base import Run
    from pytest_trtctx.scenarios.context_destroyed import SHARED, after_its_context_was_destroyed

    state = State(Registry()["context-destroyed"], 0, 0, 0)
    state.kept[SHARED] = 9
    engine = engine_in(5)
    engine.built_in = ContextInfo(5, 0, True, "MainThread")
    run = Run(state, FakeBackend(), engine, None, None, None, None)  # type: ignore[arg-type]
    with pytest.raises(OrderError, match="this one was built in the primary context of device 0"):
        after_its_context_was_destroyed(run)
    assert state.kept[SHARED] == 9 and not engine.details.get("context_destroyed")
    engine.details["context_destroyed"] = True  # a test that runs an engine a second time
    with pytest.raises(OrderError, match=r"destroyed by an earlier run; .* build another"):
        after_its_context_was_destroyed(run)


SHARED_SUITE = """
import pytest
from pytest_trtctx.engines.spec import ConvSpec
from pytest_trtctx.messages import CONTEXT_GONE

A = ConvSpec("k3_f32", 1, 4, 8, 9, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1, "float32")
B = ConvSpec("k1_f16", 2, 8, 8, 7, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1, "float16")

def test_engines_built_here_share_one_context_of_their_own(trtctx_fix_context):
    from pytest_trtctx.cuda import driver
    a, b = trtctx_fix_context.build(A), trtctx_fix_context.build(B)
    assert int(a.context) == int(b.context)
    assert int(a.context) != int(driver.retain_primary(0))

@pytest.mark.trtctx_known_failure("context-destroyed", CONTEXT_GONE)
def test_a_run_destroys_it(trtctx):
    trtctx.check_conv(A)

@pytest.mark.trtctx_known_failure("context-destroyed", CONTEXT_GONE)
def test_the_next_build_gets_another_and_its_run_destroys_that(trtctx):
    trtctx.check_conv(B)

def test_a_fixed_run_after_both(trtctx_fix_context):
    trtctx_fix_context.check_conv(A)
    trtctx_fix_context.check_conv(B)

def test_its_contexts_have_one_hardware_queue_and_the_steps_say_so(trtctx):
    import os
    assert os.environ["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    assert any(s.startswith("CUDA_DEVICE_MAX_CONNECTIONS=1 set") for s in trtctx.state.steps)
"""


@requires_gpu
def test_engines_share_a_context_until_a_run_destroys_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In one process (one worker: a share of four tests would give each a process of its own):
    two engines built by a test share one context (not the primary); a
    run destroys it and fails as declared; the next build makes another, whose run fails the
    same way; a fixed run after them gets a live context and passes. With
    --trtctx-fast-contexts the process's contexts have one hardware queue each (the environment
    here does not set it)."""
    monkeypatch.delenv("CUDA_DEVICE_MAX_CONNECTIONS", raising=False)
    pytester.makepyfile(SHARED_SUITE)
    result = run_pytest(
        pytester, "--trtctx-order=context-destroyed", "--trtctx-isolate=order",
        "--trtctx-workers=1", "--trtctx-timeout=60", "--trtctx-fast-contexts", "-rxX",
    )  # fmt: skip
    result.assert_outcomes(passed=3, xfailed=2)


#: Two specs of the shipped suite, collected as their canaries, then their fixed runs: in one
#: process the second canary's prebuilt engine is of a context the first canary destroyed, and
#: each fixed run's prebuilt engine is of it too.
TWO_SPECS = "(k1s1d1g1_f32_b1_17x19 or k3s2d1g1_f16_b1_17x19) and not plan_builds"


@requires_gpu
def test_prebuilt_engines_of_a_destroyed_context_give_a_fresh_process_outcome(
    tmp_path: Any,
) -> None:
    """One process with every engine prebuilt in the shared context, against one fresh process
    per test: the same outcomes, signatures and output hashes; both canaries reproduced."""
    from pytest_trtctx.records.cli import compare

    order = "context-destroyed"
    per_test = suite_report(tmp_path, "per-test", order, TWO_SPECS)
    shared = suite_report(
        tmp_path, "shared", order, TWO_SPECS, "--trtctx-isolate=order", "--trtctx-prebuild",
        "--trtctx-workers=1",
    )  # fmt: skip
    assert len(shared["tests"]) == 4
    diff = compare(per_test, shared)
    assert not diff.regressed and diff.compared == diff.same_outcome == 4
    assert diff.hashes_compared > 0 and not diff.hash_changed
    known = [t["known_failure"]["status"] for t in shared["tests"] if t["known_failure"]]
    assert known == ["reproduced", "reproduced"]
    assert [t["outcome"] for t in shared["tests"]].count("passed") == 2


def test_a_value_set_for_speed_is_set_where_unset_and_a_users_own_is_kept() -> None:
    """context-destroyed sets CUDA_DEVICE_MAX_CONNECTIONS=1 before cuInit for speed alone; where
    the environment sets it already, that value is the one the driver reads; either way the
    recipe's steps say which."""
    from pytest_trtctx.scenarios.process import set_for_speed

    wanted = Registry()["context-destroyed"].speed_environment
    assert wanted == {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    environ: dict[str, str] = {}
    steps = set_for_speed(wanted, environ)
    assert environ == {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    assert steps == ["CUDA_DEVICE_MAX_CONNECTIONS=1 set before cuInit, for speed alone (not the "
                     "hazard's)"]  # fmt: skip
    environ = {"CUDA_DEVICE_MAX_CONNECTIONS": "4"}
    steps = set_for_speed(wanted, environ)
    assert environ == {"CUDA_DEVICE_MAX_CONNECTIONS": "4"}
    assert steps[0].startswith("CUDA_DEVICE_MAX_CONNECTIONS=4 as the environment set it")
    environ = {"CUDA_DEVICE_MAX_CONNECTIONS": ""}  # empty: the driver's default, no choice
    set_for_speed(wanted, environ)
    assert environ == {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}


FAST = """
def test_fast(request):
    from pytest_trtctx.settings.config import settings_of
    fast = settings_of(request.config).fast_contexts
    print(f"FAST {fast.value} from {fast.source}")
"""


@pytest.mark.parametrize(
    ("args", "said"),
    [((), "FAST False from default"), (("--trtctx-fast-contexts",), "FAST True from")],
    ids=["default", "flag"],
)
def test_the_environment_for_speed_is_opt_in(
    pytester: pytest.Pytester, args: tuple[str, ...], said: str
) -> None:
    """--trtctx-fast-contexts is off unless given: a user's tests under context-destroyed keep
    the driver's default queues (their streams would share one queue too)."""
    pytester.makepyfile(test_fast=FAST)
    result = run_pytest(pytester, "-s", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{said}*"])
    result = run_pytest(pytester, "--trtctx-order=context-destroyed", *args)
    header = "*; fast contexts (option --trtctx-fast-contexts)*"  # the header says it is on
    if args:
        result.stdout.fnmatch_lines([header])
    else:
        result.stdout.no_fnmatch_line(header)
