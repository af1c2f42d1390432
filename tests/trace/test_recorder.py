"""The context tracer's CUPTI side (pytest_trtctx.trace.recorder): which line an event is blamed
on, what a
traced test says where CUPTI cannot run, and on the GPU the sentences a failure carries."""

from __future__ import annotations

import ctypes
import importlib.util
import json
import linecache
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_trtctx.messages import INSTALL_TRACE, MSG_NEEDS_PACKAGE
from pytest_trtctx.trace import recorder as tracer
from pytest_trtctx.trace.recorder import MSG_NO_SUBSCRIBE, MSG_WOULD_ADD, where_from
from pytest_trtctx.trace.timeline import Timeline

from ..conftest import (
    gpu_skip_reason,
    in_child,
    needs_package,
    requires_gpu,
    requires_two_gpus,
    run_pytest,
    suite_report,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "test_own_engine.py"
#: The GPU tests trace for real: without cupti-python they skip with its install line, before
#: anything runs in a child.
needs_cupti = needs_package("cupti", "cupti-python", INSTALL_TRACE)
cpu_only = pytest.mark.skipif(
    gpu_skip_reason() is None, reason="a CUDA driver is present: the tracer subscribes here"
)


def _library_call(frame_of: Any) -> Any:
    return frame_of()  # stands in for torch's or cuda-python's Python layer


def test_an_event_is_blamed_on_the_tests_own_line_with_the_library_line_under_it() -> None:
    import copy

    frame, line = _library_call(lambda: sys._getframe(0)), sys._getframe(0).f_lineno
    where, code, via, found = where_from(frame)
    assert found and where == f"{Path(__file__).name}:{line}"
    assert (
        code == "frame, line = _library_call(lambda: sys._getframe(0)), sys._getframe(0).f_lineno"
    )
    assert via == ""  # the lambda and _library_call are this file too: test code all the way

    # A frame in a library (copy.py here) is left out, and named as what the line went through.
    seen: list[Any] = []

    class Probe:
        def __deepcopy__(self, memo: Any) -> Any:
            seen.append(where_from(sys._getframe(1)))  # from copy.deepcopy's own frame
            return self

    copy.deepcopy(Probe())
    where, code, via, found = seen[0]
    assert found and code == "copy.deepcopy(Probe())" and via.startswith("copy.py:")
    assert via.endswith(" in deepcopy") and where.startswith(f"{Path(__file__).name}:")


def test_work_on_a_thread_the_plugin_started_is_blamed_on_the_line_that_started_it() -> None:
    """thread-hop runs the engine on a thread of its own, whose stack holds no line of the test:
    the line named is the test's that started it, with the library line under it."""
    import copy
    import functools

    from pytest_trtctx.scenarios.runners import run_on_thread

    class Probe:
        def __deepcopy__(self, memo: Any) -> Any:
            return where_from(sys._getframe(1))  # from copy.deepcopy's own frame

    seen, line = run_on_thread(functools.partial(copy.deepcopy, Probe())), sys._getframe().f_lineno
    where, code, via, found = seen
    assert found and where == f"{Path(__file__).name}:{line}", seen
    assert code.startswith("seen, line = run_on_thread(") and via.endswith(" in deepcopy"), seen

    # A thread started otherwise has only its own stack: nothing of the test's is named.
    box: list[Any] = []
    thread = threading.Thread(target=functools.partial(copy.deepcopy, _Unowned(box)))
    thread.start()
    thread.join()
    assert box and box[0][3] is False and box[0][0].startswith("copy.py:"), box


def test_the_plugins_own_frames_are_left_out_but_its_suite_is_test_code() -> None:
    package = Path(tracer.__file__).parents[1]
    assert not tracer._user_code(str(package / "scenarios" / "runtime.py"))
    assert tracer._user_code(str(package / "suite" / "test_conv_matrix.py"))
    assert not tracer._user_code(json.__file__)
    assert tracer._user_code(__file__)


class _Unowned:
    """Copied on a thread that nothing of the plugin started: says where it was copied from."""

    def __init__(self, box: list[Any]) -> None:
        self.box = box

    def __deepcopy__(self, memo: Any) -> Any:
        self.box.append(where_from(sys._getframe(1)))
        return self


class _Code:
    def __init__(self, filename: str, name: str) -> None:
        self.co_filename, self.co_name = filename, name


class _Frame:
    """What where_from reads of a frame: its code, line and caller."""

    def __init__(self, filename: str, name: str, line: int, back: Any = None) -> None:
        self.f_code, self.f_lineno, self.f_back = _Code(filename, name), line, back


def test_no_test_code_on_the_stack_gives_the_innermost_line_and_says_so() -> None:
    recipe = str(Path(tracer.__file__).parent / "orders.py")
    stack = _Frame(recipe, "_driver_first", 108, _Frame(json.__file__, "main", 3))
    line = linecache.getline(recipe, 108).strip()
    assert where_from(stack) == ("orders.py:108 in _driver_first", line, "", False)
    assert where_from(None) == ("?", "", "", False)


class CallbackData(ctypes.Structure):
    """CUPTI's ``CUpti_CallbackData``, as cupti_callbacks.h lays it out."""

    _fields_ = (
        ("callbackSite", ctypes.c_int),
        ("functionName", ctypes.c_char_p),
        ("functionParams", ctypes.c_void_p),
        ("functionReturnValue", ctypes.c_void_p),
        ("symbolName", ctypes.c_char_p),
        ("context", ctypes.c_void_p),
        ("contextUid", ctypes.c_uint32),
        ("correlationData", ctypes.c_void_p),
        ("correlationId", ctypes.c_uint32),
    )


CREATED, PRIMARY, MODULE, FUNCTION, OTHER = 0x226EA110, 0x22A7F560, 0x5500, 0x6600, 0x7700


class Driver:
    """Feeds a Tracer the callbacks CUPTI gives for a sequence of driver calls: each call's
    parameters in the driver's own parameter struct, its result behind functionReturnValue."""

    LINE = RESOURCE_LINE = 0  # the lines that hand an API callback and a resource event over

    def __init__(self, cupti: Any, tracer_: tracer.Tracer) -> None:
        self.cupti, self.tracer, self.keep = cupti, tracer_, []
        self.ids = {name: key for key, name in tracer_._names.items()}

    def call(
        self, name: str, context: int, params: Any = None, result: int = 0, during: Any = None
    ) -> None:
        """The callbacks of one call: on its way in, then ``during()`` (the resource events the
        call causes), then on its way out."""
        domain, cbid = self.ids[name]
        returned = ctypes.c_int(result)
        data = CallbackData(
            functionParams=ctypes.addressof(params) if params else None,
            functionReturnValue=ctypes.addressof(returned),
            context=context,
        )
        self.keep += [params, returned, data]
        for site in (self.cupti.ApiCallbackSite.API_ENTER, self.cupti.ApiCallbackSite.API_EXIT):
            seen = types.SimpleNamespace(
                callback_site=int(site), context=context, ptr=ctypes.addressof(data)
            )
            Driver.LINE = sys._getframe(0).f_lineno + 1
            self.tracer.on(domain, cbid, seen)
            if during is not None and site == self.cupti.ApiCallbackSite.API_ENTER:
                during()

    def created(self, context: int) -> None:
        """CUPTI's resource event for a context being made (inside the call that makes it)."""
        created = int(self.cupti.CallbackIdResource.CONTEXT_CREATED)
        domain = int(self.cupti.CallbackDomain.RESOURCE)
        Driver.RESOURCE_LINE = sys._getframe(0).f_lineno + 1
        self.tracer.on(domain, created, types.SimpleNamespace(context=context))


def pointer_to(value: int) -> Any:
    """A handle written where a call's out-parameter points."""
    box = ctypes.c_void_p(value)
    return box, ctypes.c_void_p(ctypes.addressof(box))


class Calls(Driver):
    """The calls an engine's life makes, each as the driver passes its parameters."""

    def out(self, value: int) -> int:
        box, out = pointer_to(value)
        self.keep += [box, out]
        return int(out.value or 0)

    def load(self, module: int, context: int) -> None:
        self.call("cuModuleLoadData", context, (ctypes.c_void_p * 2)(self.out(module), 0))

    def lookup(self, function: int, module: int, context: int, name: bytes = b"") -> None:
        text = ctypes.c_char_p(name)
        self.keep.append(text)
        params = (ctypes.c_void_p * 3)(
            self.out(function), module, ctypes.cast(text, ctypes.c_void_p)
        )
        self.call("cuModuleGetFunction", context, params)

    def launch(self, function: int, context: int, stream: int = 0, result: int = 0) -> None:
        params = (ctypes.c_void_p * 11)(function)
        params[5] = stream  # hStream, at offset 40 after f and seven unsigned ints
        self.call("cuLaunchKernel", context, params, result=result)


@pytest.fixture
def drive() -> Calls:
    """A fresh tracer, fed through :class:`Calls` (with the real ``cupti`` callback ids)."""
    cupti = pytest.importorskip(
        "cupti.cupti",
        reason=MSG_NEEDS_PACKAGE.format(package="cupti-python", install=INSTALL_TRACE),
    )
    traced = tracer.Tracer()
    traced.bind(cupti)
    return Calls(cupti, traced)


def test_the_callback_reads_the_4335_sequence_as_the_driver_passes_it(drive: Calls) -> None:
    """NVIDIA/TensorRT#4335's calls fed to the callback as CUPTI passes them (the driver's
    parameter structs, the result behind a pointer): the sentence names each line."""
    drive.call("cuCtxCreate_v4", CREATED, during=lambda: drive.created(CREATED))
    drive.load(MODULE, CREATED)
    drive.lookup(FUNCTION, MODULE, CREATED, b"scale")
    retain = (ctypes.c_void_p * 2)(drive.out(PRIMARY), 0)  # (CUcontext *pctx, CUdevice dev = 0)
    drive.call("cuDevicePrimaryCtxRetain", CREATED, retain)
    drive.call("cuCtxSetCurrent", PRIMARY, (ctypes.c_void_p * 1)(PRIMARY))
    drive.launch(FUNCTION, PRIMARY, result=400)
    drive.launch(OTHER, PRIMARY)  # torch's own kernel
    traced = drive.tracer
    assert traced.trouble == []
    timeline = Timeline(traced.events)
    (mismatch,) = timeline.mismatches()
    # Every call came through Driver.call, this file's own code: each is blamed on its line.
    # The context's making is the resource event, inside cuCtxCreate: named by that call.
    line, made = (f"{Path(__file__).name}:{n}" for n in (Driver.LINE, Driver.RESOURCE_LINE))
    assert timeline.explain(mismatch) == (
        f"kernel `scale` of the module loaded at {line} in context #1 (created by cuCtxCreate at "
        f"{made}) was launched at {line} while context #2 (the primary context of device 0) was "
        f"current, made current by cuCtxSetCurrent at {line}: `self.tracer.on(domain, cbid, "
        "seen)`; the launch returned CUDA_ERROR_INVALID_HANDLE"
    )
    assert traced.untraced_launches == 1  # torch's own launches are counted, not followed
    assert mismatch.launch.module == MODULE and mismatch.launch.name == "scale"


RECIPE = 0x1A00  # the driver-first recipe's context, made before the test's own


def test_a_tests_own_context_is_numbered_alike_in_the_contexts_and_trace_sections(
    drive: Calls,
) -> None:
    """A test that makes its own context under driver-first: the recipe's context is current at
    the call's start, the test's cuCtxCreate makes another, its kernel is loaded there, torch's
    first call makes the primary current, the launch fails. The contexts section is fed the same
    handles the watch reads (start, end, the output's owner) and tells the tracer's story in
    the tracer's numbering: #1 the recipe's, #2 the test's own, #3 the primary."""
    from pytest_trtctx.cuda.contexts import Snapshot
    from pytest_trtctx.scenarios.diagnosis import TRACED_FIX, context_diagnosis

    drive.call("cuCtxCreate_v4", RECIPE, during=lambda: drive.created(RECIPE))
    drive.call("cuCtxCreate_v4", CREATED, during=lambda: drive.created(CREATED))
    drive.load(MODULE, CREATED)
    drive.lookup(FUNCTION, MODULE, CREATED, b"scale")
    retain = (ctypes.c_void_p * 2)(drive.out(PRIMARY), 0)
    drive.call("cuDevicePrimaryCtxRetain", CREATED, retain)
    drive.call("cuCtxSetCurrent", PRIMARY, (ctypes.c_void_p * 1)(PRIMARY))
    drive.launch(FUNCTION, PRIMARY, result=400)
    timeline = Timeline(drive.tracer.events)
    found = timeline.mismatches()
    (mismatch,) = found
    trace = timeline.explain(mismatch)
    start = Snapshot(RECIPE, 0, False, "MainThread")
    end = Snapshot(PRIMARY, 0, True, "MainThread")
    elsewhere = 0x9900  # an output in a context the tracer never saw: named after its contexts
    owners: dict[str, int | None] = {"y": CREATED, "z": elsewhere}
    section = context_diagnosis("driver-first", [], start, end, owners, traced=(timeline, found))

    line = f"{Path(__file__).name}:{Driver.LINE}"
    made = f"created by cuCtxCreate at {Path(__file__).name}:{Driver.RESOURCE_LINE}"
    assert f"kernel `scale` of the module loaded at {line} in context #2 ({made})" in trace
    assert "while context #3 (the primary context of device 0) was current" in trace
    assert "start of the call: #1, a context of its own on device 0" in section
    assert "at its end: #3, the primary context of device 0" in section
    assert "output 'y': memory of context #2" in section
    assert "output 'z': memory of context #4" in section
    assert (
        f"what happened (traced): the kernel's module was made at {line} in #2 ({made}); it "
        f"was launched at {line} while #3 (the primary context of device 0) was current, made "
        f"current by cuCtxSetCurrent at {line}; over the call the current context went from "
        "#1 to #3. "
    ) in section
    # The rule is said from the traced launch, not guessed from torch (a push or a new thread
    # makes a context current as well as torch's first call).
    assert "the context it was loaded in (#2)" in section and "another (#3) is current" in section
    assert "torch's first CUDA call" not in section and TRACED_FIX in section

    # Untraced, the watch numbers what it saw, in its own order: start, end, the outputs.
    alone = context_diagnosis("driver-first", [], start, end, owners)
    assert "start of the call: #1," in alone and "at its end: #2, the primary" in alone
    assert "output 'y': memory of context #3" in alone
    assert "from #1 to #2" in alone and "(traced)" not in alone


def test_a_launch_on_a_stream_of_another_context_is_named_with_the_streams_making(
    drive: Calls,
) -> None:
    """The foreign-stream hazard as the callback sees it: the kernel's module is the current
    context's, its stream was made in another context (NVIDIA/TensorRT#4191)."""
    drive.call("cuCtxCreate_v4", CREATED, during=lambda: drive.created(CREATED))
    drive.call("cuStreamCreate", CREATED, (ctypes.c_void_p * 2)(drive.out(0x8800), 1))
    drive.call("cuCtxSetCurrent", PRIMARY, (ctypes.c_void_p * 1)(PRIMARY))
    drive.load(MODULE, PRIMARY)
    drive.lookup(FUNCTION, MODULE, PRIMARY)
    drive.launch(FUNCTION, PRIMARY, stream=0x8800, result=400)
    timeline = Timeline(drive.tracer.events)
    (mismatch,) = timeline.mismatches()
    line = f"{Path(__file__).name}:{Driver.LINE}"
    assert timeline.explain(mismatch).startswith(
        f"a kernel was launched at {line} on a stream made at {line} in context #1 (created by "
        f"cuCtxCreate at {Path(__file__).name}:{Driver.RESOURCE_LINE}) while context #2 was "
        "current, made current by cuCtxSetCurrent at"
    )


def test_past_the_bound_only_launches_in_another_context_are_kept(
    drive: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracer, "MAX_PROCESS_EVENTS", 10)
    drive.load(MODULE, CREATED)
    drive.lookup(FUNCTION, MODULE, CREATED)
    for _ in range(50):  # in the module's own context: fine, and past the bound dropped
        drive.launch(FUNCTION, CREATED)
    drive.launch(FUNCTION, PRIMARY, result=400)
    assert len(drive.tracer.events) == 11 and drive.tracer.dropped == 42
    assert len(Timeline(drive.tracer.events).mismatches()) == 1


def test_the_callback_never_raises_into_the_driver(drive: Calls) -> None:
    traced = drive.tracer
    domain, cbid = next(k for k, v in traced._names.items() if v == "cuLaunchKernel")
    traced._callback(None, domain, cbid, object())  # no fields at all: counted, not raised
    assert len(traced.trouble) == 1 and "AttributeError" in traced.trouble[0]


FAILING = """
import pytest

@pytest.mark.trtctx_trace
def test_traced():
    assert 0

def test_plain():
    assert 0
"""


@cpu_only
def test_without_a_driver_a_traced_test_says_why_it_ran_untraced(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_t=FAILING)
    result = run_pytest(pytester, "--trtctx-report=r.json")
    result.assert_outcomes(failed=2)
    why = MSG_NO_SUBSCRIBE.format(why="*")
    result.stdout.fnmatch_lines(["*- trtctx trace -*", f"off: {why}"])
    assert result.stdout.str().count("- trtctx trace -") == 1  # only the marked test
    records = {t["nodeid"]: t for t in json.loads((pytester.path / "r.json").read_text())["tests"]}
    assert records["test_t.py::test_traced"]["trace"]["on"] is False
    assert "trace" not in records["test_t.py::test_plain"]


@cpu_only
def test_the_option_traces_every_test_and_ini_twin_does_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_t=FAILING)
    pytester.makeini("[pytest]\ntrtctx_trace = true\n")
    result = run_pytest(pytester)
    assert result.stdout.str().count("- trtctx trace -") == 2


def test_the_header_says_the_tracer_is_on_and_where_that_came_from(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_t="def test_x(): pass")
    pytester.makeini("[pytest]\ntrtctx_trace = true\n")
    result = run_pytest(pytester, "--trtctx-order=torch-first", "--co")
    result.stdout.fnmatch_lines(
        ["trtctx: orders torch-first *; context tracer on (ini key trtctx_trace*)"]
    )
    # Where cupti-python is missing the header says so at once (a test says it only on failure).
    missing = importlib.util.find_spec("cupti") is None
    said = f"but cupti-python is not installed: nothing is traced; {INSTALL_TRACE})"
    assert (said in result.stdout.str()) is missing, result.stdout.str()


# GPU ----------------------------------------------------------------------------------------


@requires_gpu
@needs_cupti
def test_a_users_engine_under_driver_first_is_named_with_every_line(
    pytester: pytest.Pytester,
) -> None:
    """NVIDIA/TensorRT#4335's shape as a user writes it: the kernel loaded in the context that
    import pycuda.autoinit's cuCtxCreate made, torch's first .to("cuda") making the primary
    current, the launch there. The failure names each line."""
    source = EXAMPLE.read_text()
    lines = source.splitlines()

    def line_of(text: str) -> int:
        return next(n for n, line in enumerate(lines, 1) if text in line)

    pytester.makepyfile(test_own_engine=source)
    result = run_pytest(
        pytester,
        "--trtctx-order=driver-first",
        "--trtctx-trace",
        "-k",
        "as-is",
        "-p",
        "no:randomly",
    )
    result.assert_outcomes(failed=1)
    load, first_torch = line_of("cu.cuModuleLoadData("), line_of('.to("cuda")')
    launch = line_of("cu.cuLaunchKernel(")
    result.stdout.fnmatch_lines(
        [
            "*- trtctx trace -*",
            "launched in another context than its module's: kernel `scale` of the module loaded "
            f"at test_own_engine.py:{load} in context #1 (created by cuCtxCreate in the "
            "driver-first order's recipe) was launched at "
            f"test_own_engine.py:{launch} while context #2 (the primary context of device 0) was "
            f'current, made current by * at test_own_engine.py:{first_torch}: `*.to("cuda")*`'
            "; the launch returned CUDA_ERROR_INVALID_HANDLE",
        ]
    )


OWN_CONTEXT = """

@pytest.mark.trtctx_nonzero
def test_own_context(trtctx_order, trtctx_outputs):
    device = _ok(cu.cuCtxGetDevice())
    try:  # cuda-bindings 13: cuCtxCreate(ctxCreateParams, flags, dev); 12: (flags, dev)
        own = _ok(cu.cuCtxCreate(None, 0, device))
    except TypeError:
        own = _ok(cu.cuCtxCreate(0, device))
    engine = MyEngine()  # loaded in the test's own context
    x = torch.arange(4096, dtype=torch.float32).to("cuda")  # torch makes the primary current
    y = trtctx_outputs.empty((4096,), dtype=torch.float32, device="cuda")
    engine.run(x, y, 4096, False)
    trtctx_outputs.add("y", y)
    del own
"""


@requires_gpu
@needs_cupti
def test_a_tests_own_context_is_numbered_alike_in_both_sections_on_the_gpu(
    pytester: pytest.Pytester,
) -> None:
    """A user test that makes its own context (cuCtxCreate) under driver-first, traced: the
    recipe's context is #1, the test's own #2 (its kernel's module loaded there), the primary
    #3, in the contexts section and the trace section alike. Written for a GPU host."""
    source = EXAMPLE.read_text() + OWN_CONTEXT
    lines = source.splitlines()
    pytester.makepyfile(test_own_engine=source)
    result = run_pytest(
        pytester, "--trtctx-order=driver-first", "--trtctx-trace", "-k", "own_context"
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    contexts = out.partition("- trtctx contexts -")[2].partition("- trtctx trace -")[0]
    trace = out.partition("- trtctx trace -")[2]
    load = next(n for n, line in enumerate(lines, 1) if "cu.cuModuleLoadData(" in line)
    made = next(n for n, line in enumerate(lines, 1) if "own = _ok(cu.cuCtxCreate(None" in line)
    assert "start of the call: #1, a context of its own on device 0" in contexts, contexts
    assert "at its end: #3, the primary context of device 0" in contexts, contexts
    assert "what happened (traced): the kernel's module was made at " in contexts, contexts
    assert (
        f"test_own_engine.py:{load}" in contexts
        and " in #2 (created by cuCtxCreate at " in contexts
    )
    assert "while #3 (the primary context of device 0) was current" in contexts, contexts
    assert f"in context #2 (created by cuCtxCreate at test_own_engine.py:{made})" in trace, trace
    assert "while context #3 (the primary context of device 0) was current" in trace, trace
    # torch's memory is the context's that was current at torch's first CUDA call (the test's
    # own, here; the recipe's in the README's example), as the driver answers for the pointer
    assert "output 'y': memory of context #2" in contexts, contexts


@requires_gpu
@needs_cupti
def test_every_known_failure_of_the_suite_carries_its_trace(tmp_path: Any) -> None:
    """--trtctx-trace on the shipped suite: every known failure names the module's context, the
    launch's and what switched them; the passing orders and the fixed test name none."""
    report = suite_report(
        tmp_path, "traced", "torch-first,driver-first,thread-hop",
        "k1s1d1g1_f32_b1_17x19 or k3s2d1g1_f16_b1_17x19", "--trtctx-trace",
    )  # fmt: skip
    conv = [t for t in report["tests"] if "::test_conv" in t["nodeid"] and t["order"]]
    assert conv and all(t["trace"]["on"] for t in conv)
    for test in conv:
        said = test["trace"]["mismatches"]
        if test["order"] == "torch-first" or "test_conv_fixed" in test["nodeid"]:
            assert said == [], test["nodeid"]
            continue
        assert test["known_failure"]["status"] == "reproduced", test["nodeid"]
        assert len(said) == 1, said
        launched, _, switched = said[0].partition(" was current, made current by ")
        assert "was launched at test_conv_matrix.py:" in launched, said
        assert "in the {}".format(test["order"]) in launched, said
        assert " at test_conv_matrix.py:" in switched, said  # the test's line, not the plugin's
        assert ("on thread trtctx-exec" in launched) == (test["order"] == "thread-hop"), said


@requires_two_gpus
@needs_cupti
def test_a_known_failure_across_two_devices_names_each_devices_context(tmp_path: Any) -> None:
    """multi-device and device-hop traced: the module's context is device 1's primary, the
    launch's device 0's. Written for a two-GPU host; not yet run on one."""
    report = suite_report(
        tmp_path, "two-devices", "multi-device,device-hop", "k1s1d1g1_f32_b1_17x19",
        "--trtctx-trace",
    )  # fmt: skip
    conv = [t for t in report["tests"] if "::test_conv[" in t["nodeid"] and t["order"]]
    assert {t["order"] for t in conv} == {"multi-device", "device-hop"}, conv
    for test in conv:
        said = test["trace"]["mismatches"]
        assert test["known_failure"]["status"] == "reproduced" and len(said) == 1, test
        launched = said[0].partition(" was current")[0]
        assert "(the primary context of device 1) was launched at test_conv_matrix.py:" in launched
        assert launched.endswith("(the primary context of device 0)"), said


def _profiler_beside_the_tracer(first: str) -> dict[str, Any]:
    """torch.profiler and the tracer in one process, either one first: what each got."""
    import torch

    out: dict[str, Any] = {"first": first}

    def profile() -> None:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            (torch.ones(1024, device="cuda") * 2).sum().item()
            if first == "profiler":
                _running, why = tracer.start()
                out["tracer"] = why or "on"
        names = [e.key for e in prof.key_averages()]
        out["profiler_cuda_events"] = sum(1 for n in names if "elementwise" in n or "Kernel" in n)

    if first == "tracer":
        torch.ones(1, device="cuda")
        _running, why = tracer.start()
        out["tracer"] = why or "on"
    profile()
    if tracer.TRACER is not None:
        tracer.TRACER.stop()
    return out


@requires_gpu
@needs_cupti
@pytest.mark.parametrize("first", ["tracer", "profiler"])
def test_torch_profiler_beside_the_tracer_never_crashes_and_is_explained(first: str) -> None:
    got = in_child(_profiler_beside_the_tracer, first)
    if first == "profiler":  # the profiler holds CUPTI's one subscription: the tracer says so,
        assert got["tracer"] == "on" or "Another CUPTI subscriber is active" in got["tracer"], got
        assert got["profiler_cuda_events"] > 0, got  # and takes none of the profiler's events
    else:  # the tracer holds it: the profiler warns and records no CUDA events (docs/trace.md)
        assert got["tracer"] == "on", got
    print(got)


def test_the_hint_names_the_option() -> None:
    assert "--trtctx-trace" in MSG_WOULD_ADD


def test_a_missing_package_skips_with_the_line_that_installs_it() -> None:
    """The GPU tests above skip without cupti-python by this rule, decided before any child."""
    mark = needs_package("trtctx_no_such_package.sub", "no-such-package", INSTALL_TRACE)
    assert mark.args == (True,)
    assert mark.kwargs["reason"] == MSG_NEEDS_PACKAGE.format(
        package="no-such-package", install=INSTALL_TRACE
    )
    assert needs_package("json", "json", "").args == (False,)  # present: runs
