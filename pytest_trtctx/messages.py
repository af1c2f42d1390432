"""Names, allowed values and message templates shared by the plugin and its tests.

Tests import the messages from here instead of repeating them, so a reworded message cannot make
a test pass by accident or fail for nothing.
"""

from __future__ import annotations

from typing import Final

#: What --trtctx-order takes besides scenario names: every init order, every context hazard.
ALL_ORDERS: Final = "all"
ALL_HAZARDS: Final = "hazards"
#: Set in a process once a scenario's recipe was applied there (its name): code that runs in that
#: process or in what it starts can tell which scenario it meets, from import time on.
SCENARIO_ENV: Final = "TRTCTX_SCENARIO"

#: Backends known to this version. ``auto`` picks the best one that can run here.
BACKENDS: Final[tuple[str, ...]] = ("auto", "cuda", "tensorrt", "tensorrt_rtx", "cudnn", "triton")

#: The failure family of an engine run in a context that does not own its kernels, as a regex over
#: failure signatures: the driver's result (reference backend), and TensorRT's own words for it
#: (NVIDIA/TensorRT#4335: "Error Code 1: Cask (Cask convolution execution)"; ultralytics#9092:
#: "invalid resource handle"); Triton words the driver's result "invalid resource handle", and
#: cuDNN refuses a stream of another context than its handle's ("cudnnSetStream failed").
CONTEXT_MISMATCH: Final = (
    r"^backend: (CUDA_ERROR_INVALID_HANDLE$|.*Error Code 1: Cask\b|.*invalid resource handle"
    r"|.*cudnnSetStream failed)"
)

#: A run in a context that was destroyed underneath the engine: the driver's results for a
#: handle of a dead context, and TensorRT's words (NVIDIA/TensorRT#2052: "context is destroyed");
#: a library that words CUDA_ERROR_INVALID_HANDLE itself (Triton) says "invalid resource handle";
#: cuDNN refuses a stream for a handle whose context is gone ("cudnnSetStream failed").
CONTEXT_GONE: Final = (
    r"^backend: (CUDA_ERROR_(INVALID_HANDLE|CONTEXT_IS_DESTROYED|INVALID_CONTEXT)$"
    r"|.*context is destroyed|.*invalid resource handle|.*cudnnSetStream failed)"
)

#: An engine run in a process forked after CUDA was initialised: the child's driver refuses every
#: call (CUDA_ERROR_NOT_INITIALIZED), and TensorRT's words for it (NVIDIA/TensorRT#3636:
#: "Error Code 1: Cuda Runtime (initialization error)").
CUDA_LOST_IN_FORK: Final = r"^backend: (CUDA_ERROR_NOT_INITIALIZED$|.*initialization error)"

#: A run that returned only once a kernel polling on another stream was released: under lazy
#: loading a kernel's first launch waits for the device to drain (NVIDIA/nvbench#136).
MSG_LAZY_STALL: Final = "lazy loading: the launch waited for a kernel on another stream"
LAZY_LOADING_STALL: Final = r"^backend: lazy loading: the launch waited for a kernel"
#: Why lazy-stall does not run an engine whose launch holds the GIL (the poller's release is a
#: Python thread, which then never runs: the run would deadlock instead of stalling).
MSG_LAZY_STALL_GIL: Final = (
    "lazy-stall does not run {backend} engines: {backend}'s launch keeps Python's GIL while it "
    "waits for the kernel polling on another stream, and that kernel is released by a Python "
    "thread, so the run deadlocks instead of stalling (seen on a GPU, with and without the fix: "
    "no return until the plugin's timeout); the hazard stands for it all the same, only this "
    "harness cannot release it"
)

ISOLATE_MODES: Final[tuple[str, ...]] = ("none", "order", "test")

#: The install lines of the optional parts, said wherever one is missing (messages, skips).
INSTALL_TRACE: Final = (
    "pip install 'pytest-trtctx[trace]' \"cupti-python==M.m.*\" with M.m the major.minor of the "
    "nvidia-cuda-cupti torch brought (docs/trace.md, 'Installing the tracer')"
)
INSTALL_RTX: Final = "pip install 'pytest-trtctx[rtx]'"
INSTALL_CUDA: Final = "pip install 'pytest-trtctx[cuda]'"
INSTALL_XDIST: Final = "pip install 'pytest-trtctx[xdist]'"
INSTALL_CUDNN: Final = "pip install 'pytest-trtctx[cudnn]'"
#: Triton comes with torch's CUDA wheels on Linux; elsewhere it is a package of its own.
INSTALL_TRITON: Final = "pip install 'pytest-trtctx[triton]' (torch's CUDA wheels bring it)"
#: A cuDNN plan slot past the plans the heuristics offered for the spec (docs/orders.md,
#: "Vendor backends").
MSG_PLAN_NOT_OFFERED: Final = (
    "cuDNN offered {count} plans for {spec}: plan slot {slot} is past them"
)
#: A plan the heuristics offered that the frontend declined to build.
MSG_PLAN_NOT_BUILT: Final = (
    "cuDNN plan {slot} of {count} for {spec} ({name}) declined to build: {why}"
)
#: The last slot, where the heuristics offered more plans than the slots run.
MSG_PLANS_CUT: Final = (
    "cuDNN offered {count} plans for {spec}; plans {first}..{last} are not run: "
    "raise --trtctx-cudnn-plans (now {slots})"
)
#: A test or a missing package's skip: which package, and the line that installs it.
MSG_NEEDS_PACKAGE: Final = "{package} is not installed: {install}"

#: The attribute of a thread the plugin starts for a test's work (thread-hop runs the engine on
#: one): the frame that started it. The thread's own stack holds no line of the test, so the
#: tracer follows this frame to name the test's line for what the thread does.
STARTED_FROM: Final = "trtctx_started_from"

# Marker names.
MARK_ORDERS: Final = "trtctx_orders"
MARK_KNOWN_FAILURE: Final = "trtctx_known_failure"
MARK_NONZERO: Final = "trtctx_nonzero"
MARK_BITWISE_STABLE: Final = "trtctx_bitwise_stable"
MARK_TIMEOUT: Final = "trtctx_timeout"
MARK_BACKEND: Final = "trtctx_backend"
MARK_TRACE: Final = "trtctx_trace"
MARK_SCENARIO_EXPECTED: Final = "trtctx_scenario_expected"

# Messages (format strings). Tests match on these.
MSG_BAD_VALUE: Final = "{where}: unknown value {value!r}; allowed: {allowed}"
MSG_EMPTY_VALUE: Final = "{where}: empty value; allowed: {allowed}"
MSG_NONE_ONE_ORDER: Final = (
    "{where}: --trtctx-isolate=none applies one order once, in this process; "
    "{count} orders were selected ({orders}). Use --trtctx-isolate=order or test."
)
MSG_DEBUGGER_ISOLATED: Final = (
    "{flag} cannot stop in a test that runs in a forked worker ({where}): the worker is not in "
    "the terminal's foreground and would die waiting for input. Debug one test in the pytest "
    "process with --trtctx-isolate=none (with one order selected), or drop {flag}."
)
MSG_CUDA_TOUCHED: Final = (
    "not run: the pytest process initialised CUDA ({why}; {culprit}), and a test runs under an "
    "order only in a process where CUDA was never initialised before the order's recipe. Test "
    "modules are imported after the recipe; conftest.py files and plugins are imported by the "
    "pytest process before it: move their CUDA work into a fixture "
    "(pytest_trtctx.cuda_available() asks a child process whether a GPU is usable)."
)
#: Where CUDA got initialised in the pytest process, for MSG_CUDA_TOUCHED's culprit.
MSG_CULPRIT_MODULE: Final = "importing or collecting {module} did it"
MSG_CULPRIT_STARTUP: Final = (
    "it happened before collection: a conftest.py, a plugin or pytest's startup did it"
)
MSG_CULPRIT_UNKNOWN: Final = "it happened after collection, at session start or in a hook"
#: The statement that did it, found by running the loaded modules statement by statement.
MSG_CULPRIT_CALL: Final = "the statement that does it: {path}:{line}: {code}"
MSG_CULPRIT_CALL_UNKNOWN: Final = "which statement does it could not be told: {why}"
MSG_WORKER_REPLACED: Final = "ran in a fresh worker: the one before {what} in {nodeid}"
MSG_STICKY: Final = "was retired after a sticky CUDA error ({error})"
MSG_NO_ORDER_SELECTED: Final = (
    "no init order selected: this test asks for one (trtctx_order); run with "
    "--trtctx-order=ORDER (one of {orders}, or "
    + ALL_ORDERS
    + "; or "
    + ALL_HAZARDS
    + ": every context hazard)"
)
#: The same, for a test whose ``trtctx_orders`` marker names the orders it may run under.
MSG_NO_ORDER_SELECTED_MARKED: Final = (
    "no init order selected: this test runs under {marked} alone (trtctx_orders); run with "
    "--trtctx-order={marked}"
)
MSG_ORDER_NOT_APPLIED: Final = (
    "order {order} was not applied in this process (it runs {applied}): the test cannot meet it"
)
MSG_CRASHED: Final = (
    "worker process (pid {pid}) died while running {nodeid} in phase '{phase}': {how}"
)
MSG_FOREIGN_BYTES: Final = (
    "{count} bytes on the report pipe of worker process (pid {pid}) during {nodeid} were not "
    "written by the plugin (something the test ran wrote to a file descriptor it inherited); "
    "they were ignored and the results kept. They began: {sample!r}"
)
MSG_HUNG: Final = (
    "worker process (pid {pid}) hung: {nodeid} made no progress for {timeout:g} s in phase "
    "'{phase}' (trtctx_timeout, from {source}); it was killed"
)
MSG_KNOWN_FAILURE_GONE: Final = (
    "known failure under {order} stopped reproducing: the test passed, but it is declared to fail "
    "with a signature matching {signature!r} ({reason}). Behaviour changed: update the declaration."
)
MSG_KNOWN_FAILURE_OTHER: Final = (
    "known failure under {order} failed differently: expected a signature matching "
    "{signature!r}, got {got!r}"
)
MSG_KNOWN_FAILURE_STALE: Final = (
    "known failure under {order} not enforced: an earlier test in this process already met the "
    "order fresh (torch and the engine share a context now), so this test must pass like any "
    "other. Use --trtctx-isolate=test to meet the order fresh in every test."
)
MSG_ONLY_ORDERS: Final = "runs only under {wanted}; selected: {selected}"
MSG_BAD_SCENARIO: Final = "{where}: cannot register a scenario: {why}"
MSG_NO_DRIVER: Final = "no CUDA driver: {why}"
MSG_TOO_FEW_DEVICES: Final = (
    "{order} needs at least {needs} CUDA devices; this machine has {count} ({names})"
)
MSG_NOT_COLLECTED_IN_WORKER: Final = (
    "{nodeid} was collected by the pytest process's collection but not by its worker's, after "
    "the order's recipe: the module collects differently once the recipe ran (a test defined or "
    "parametrised by what CUDA reports at import?). What the worker's collection said:\n{why}"
)
MSG_COLLECTION_DIED: Final = (
    "pytest-trtctx: collecting the tests in a child process failed ({how}); the tests are "
    "collected there so that the pytest process never imports a test module (docs/isolation.md)"
)
MSG_CULPRIT_CONFTESTS: Final = (
    "it happened while the pytest process loaded the conftest.py files of the collected tests"
)

# The HTML page (--trtctx-html, pytest-trtctx html).
#: A cell's colour: the state of its test, as the legend says it.
CELL_STATES: Final[dict[str, str]] = {
    "passed": "passed",
    "known": "known failure reproduced",
    "gone": "known failure not reproduced",
    "failed": "failed",
    "xfailed": "xfailed",
    "skipped": "skipped",
    "notrun": "not run",
}
#: A cell's mark on the diff page: what changed from the base report to the new one.
CHANGE_MARKS: Final[dict[str, str]] = {
    "regressed": "regressed",
    "gone": "known failure stopped reproducing",
    "hash": "output hash changed",
    "fixed": "fixed",
    "changed": "outcome changed",
    "added": "test added",
    "removed": "test removed",
    "notrun": "never ran",
}
MSG_HTML_WRITTEN: Final = "HTML page written to {where}"
MSG_HTML_NOT_WRITTEN: Final = "HTML page NOT written: {why}"
MSG_HTML_NO_DIAGNOSIS: Final = (
    "no context diagnosis recorded: the report was written before pytest-trtctx recorded it, or "
    "the call's contexts were not watched (no order, or no CUDA)"
)
