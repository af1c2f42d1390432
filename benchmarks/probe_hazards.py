"""What the driver does in each context hazard beyond init order, each in a fresh process.

The mechanisms of the field reports, reproduced with cuda-python and torch (no TensorRT): a kernel
compiled with NVRTC and loaded with cuModuleLoadData stands in for an engine's kernels, as in the
plugin's reference backend. Each scenario prints one JSON line: what each step returned, whether
the output was written, the exit status and the end of stderr. Run on a GPU host:

    python benchmarks/probe_hazards.py [SCENARIO ...] [--json out.json]

Scenarios: fork_after_cuinit, fork_after_torch, foreign_stream, graph_capture, context_destroyed,
primary_reset, lazy_stall (CUDA_MODULE_LOADING=LAZY), lazy_stall_eager (=EAGER), and the same
for a kernel of a library (cuLibraryLoadData): lazy_stall_library, lazy_stall_library_eager.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

SOURCE = rb"""
extern "C" __global__ void scale(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i] + 1.0f;
}
extern "C" __global__ void spin(volatile int* flag) {
    while (*flag == 0) { }
}
extern "C" __global__ void other(float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 7.0f;
}
"""
N = 4096


def cu() -> Any:
    from cuda.bindings import driver

    return driver


def name(err: Any) -> str:
    return str(cu().CUresult(int(err)).name)


def call(log: list[str], what: str, result: Any) -> Any:
    """Run a driver call's result through the log: its result name, its value."""
    err, *values = result if isinstance(result, tuple) else (result,)
    log.append(f"{what}: {name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def cubin(log: list[str]) -> bytes:
    from cuda.bindings import nvrtc

    d = cu()
    call(log, "cuInit", d.cuInit(0))  # the device's attributes need it
    dev = call(log, "cuDeviceGet", d.cuDeviceGet(0))
    attr = d.CUdevice_attribute
    major = call(
        log, "cc", d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)
    )
    minor = call(
        log, "cc", d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)
    )
    _err, prog = nvrtc.nvrtcCreateProgram(SOURCE, b"k.cu", 0, [], [])
    opts = [f"--gpu-architecture=sm_{major}{minor}".encode()]
    nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    _err, size = nvrtc.nvrtcGetCUBINSize(prog)
    data = b" " * size
    nvrtc.nvrtcGetCUBIN(prog, data)
    return data


class Kernel:
    """The stand-in engine: its module loaded into the context current now."""

    def __init__(self, log: list[str], data: bytes, fn: bytes = b"scale") -> None:
        d = cu()
        self.log = log
        self.context = call(log, "cuCtxGetCurrent at load", d.cuCtxGetCurrent())
        self.module = call(log, "cuModuleLoadData", d.cuModuleLoadData(data))
        self.function = call(
            log, f"cuModuleGetFunction {fn.decode()}", d.cuModuleGetFunction(self.module, fn)
        )

    def launch(self, x: int, y: int, n: int = N, stream: Any = 0, what: str = "launch") -> str:
        d = cu()
        args = [ctypes.c_void_p(x), ctypes.c_void_p(y), ctypes.c_int(n)]
        params = (ctypes.c_void_p * 3)(*[ctypes.addressof(a) for a in args])
        err = d.cuLaunchKernel(
            self.function, (n + 255) // 256, 1, 1, 256, 1, 1, 0, stream, ctypes.addressof(params), 0
        )[0]
        self.log.append(f"{what}: {name(err)}")
        return name(err)


def written(y: Any) -> dict[str, Any]:
    import torch

    torch.cuda.synchronize()
    host = y.cpu()
    return {"sentinel_left": int((host == -1).sum()), "n": host.numel()}


# Scenarios ------------------------------------------------------------------------------------


def fork_after(first: str) -> dict[str, Any]:
    """The parent initialises CUDA (only cuInit, or torch), then forks; the child builds and
    runs an engine and uses torch."""
    log: list[str] = []
    d = cu()
    data = cubin([])  # NVRTC calls cuInit itself (docs/isolation.md): compile in the parent
    if first == "cuinit":
        call(log, "parent cuInit", d.cuInit(0))
    else:
        import torch

        torch.ones(1, device="cuda")
        log.append("parent: torch allocated on cuda")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        child: list[str] = []
        try:
            call(child, "child cuInit", d.cuInit(0))
            dev = call(child, "child cuDeviceGet", d.cuDeviceGet(0))
            ctx = call(child, "child cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(dev))
            if ctx is not None:
                call(child, "child cuCtxSetCurrent", d.cuCtxSetCurrent(ctx))
                engine = Kernel(child, data)
                mem = call(child, "child cuMemAlloc", d.cuMemAlloc(N * 8))
                if mem is not None:
                    engine.launch(int(mem), int(mem) + N * 4, what="child launch")
                    child.append(f"child cuCtxSynchronize: {name(d.cuCtxSynchronize()[0])}")
            try:
                import torch

                x = torch.ones(N, device="cuda")
                child.append(f"child torch: ok {float(x.sum())}")
            except Exception as exc:
                child.append(f"child torch: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        except Exception as exc:
            child.append(f"child raised {type(exc).__name__}: {exc}")
        os.write(w, json.dumps(child).encode())
        os._exit(0)
    os.close(w)
    data_out = b""
    while chunk := os.read(r, 65536):
        data_out += chunk
    _pid, status = os.waitpid(pid, 0)
    return {"log": log, "child": json.loads(data_out or b"[]"), "child_status": status}


def foreign_stream() -> dict[str, Any]:
    """A stream made in a context of its own (as pycuda code makes one), handed to an engine
    loaded in the primary context while the primary is current; then a second, clean engine."""
    import torch

    log: list[str] = []
    d = cu()
    data = cubin(log)
    torch.ones(1, device="cuda")  # torch first: the primary context current
    primary = call(log, "cuCtxGetCurrent (primary)", d.cuCtxGetCurrent())
    dev = call(log, "cuDeviceGet", d.cuDeviceGet(0))
    try:
        own = call(log, "cuCtxCreate", d.cuCtxCreate(None, 0, dev))
    except TypeError:
        own = call(log, "cuCtxCreate", d.cuCtxCreate(0, dev))
    foreign = call(log, "cuStreamCreate in the created context", d.cuStreamCreate(0))
    call(log, "cuCtxSetCurrent primary", d.cuCtxSetCurrent(primary))
    engine = Kernel(log, data)
    x = torch.ones(N, device="cuda")
    y = torch.full((N,), -1.0, device="cuda")
    engine.launch(x.data_ptr(), y.data_ptr(), stream=foreign, what="launch on the foreign stream")
    log.append(f"cuStreamSynchronize foreign: {name(d.cuStreamSynchronize(foreign)[0])}")
    log.append(f"cuCtxSynchronize: {name(d.cuCtxSynchronize()[0])}")
    first = written(y)
    y2 = torch.full((N,), -1.0, device="cuda")
    clean = Kernel(log, data)
    clean.launch(x.data_ptr(), y2.data_ptr(), what="second engine, default stream")
    log.append(f"cuCtxSynchronize: {name(d.cuCtxSynchronize()[0])}")
    second = written(y2)
    del own
    return {"log": log, "first_output": first, "second_output": second}


def graph_capture() -> dict[str, Any]:
    """The engine's launch captured by torch.cuda.graph while another context than its module's
    is current (driver-first: its module in the cuCtxCreate context, torch's capture in the
    primary); the graph replayed."""
    import warnings

    import torch

    log: list[str] = []
    d = cu()
    data = cubin(log)
    dev = call(log, "cuDeviceGet", d.cuDeviceGet(0))
    try:
        call(log, "cuCtxCreate", d.cuCtxCreate(None, 0, dev))
    except TypeError:
        call(log, "cuCtxCreate", d.cuCtxCreate(0, dev))
    engine = Kernel(log, data)
    x = torch.ones(N, device="cuda")  # torch's first call: the primary becomes current
    y = torch.full((N,), -1.0, device="cuda")
    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            with torch.cuda.graph(graph, stream=stream):
                engine.launch(
                    x.data_ptr(),
                    y.data_ptr(),
                    stream=stream.cuda_stream,
                    what="launch inside capture",
                )
        except Exception as exc:
            caught.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    log += [f"warning: {w.message}" for w in seen]
    try:
        graph.replay()
        torch.cuda.synchronize()
        log.append("replay: ok")
    except Exception as exc:
        caught.append(f"replay {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return {"log": log, "raised": caught, "output": written(y)}


def context_destroyed() -> dict[str, Any]:
    """A library destroys its context while the engine still holds kernels and memory there."""
    log: list[str] = []
    d = cu()
    data = cubin(log)
    dev = call(log, "cuDeviceGet", d.cuDeviceGet(0))
    try:
        ctx = call(log, "cuCtxCreate", d.cuCtxCreate(None, 0, dev))
    except TypeError:
        ctx = call(log, "cuCtxCreate", d.cuCtxCreate(0, dev))
    engine = Kernel(log, data)
    x = call(log, "cuMemAlloc x", d.cuMemAlloc(N * 4))
    y = call(log, "cuMemAlloc y", d.cuMemAlloc(N * 4))
    call(log, "cuCtxDestroy", d.cuCtxDestroy(ctx))
    engine.launch(int(x), int(y), what="launch after the destroy")
    log.append(f"cuCtxGetCurrent after: {name(d.cuCtxGetCurrent()[0])}")
    log.append(f"cuModuleUnload after: {name(d.cuModuleUnload(engine.module)[0])}")
    return {"log": log}


def primary_reset() -> dict[str, Any]:
    """torch-first; the engine in the primary; a library resets the primary context
    (cuDevicePrimaryCtxReset, as cudaDeviceReset does) while torch and the engine hold it."""
    import torch

    log: list[str] = []
    d = cu()
    data = cubin(log)
    x = torch.ones(N, device="cuda")
    engine = Kernel(log, data)
    y = torch.full((N,), -1.0, device="cuda")
    dev = call(log, "cuDeviceGet", d.cuDeviceGet(0))
    call(log, "cuDevicePrimaryCtxReset", d.cuDevicePrimaryCtxReset(dev))
    engine.launch(x.data_ptr(), y.data_ptr(), what="launch after the reset")
    log.append(f"cuCtxSynchronize: {name(d.cuCtxSynchronize()[0])}")
    try:
        log.append(f"torch after the reset: {float((x * 2).sum())}")
    except Exception as exc:
        log.append(f"torch after the reset: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return {"log": log}


def lazy_stall(kind: str) -> dict[str, Any]:
    """A persistent kernel polls a host-mapped flag on one stream; another thread then looks up
    and launches a kernel never used yet: of a module loaded earlier (``kind`` "module": under
    lazy loading cuModuleGetFunction loads it), or of a library (``kind`` "library",
    cuLibraryLoadData, as the CUDA runtime loads its own kernels: loaded into the context at
    the first launch). The flag is set only after that thread is done or 10 s have passed:
    where loading waits for the device to drain, the thread waits for ever."""
    log: list[str] = [f"CUDA_MODULE_LOADING={os.environ.get('CUDA_MODULE_LOADING', '(unset)')}"]
    d = cu()
    data = cubin(log)
    dev = call(log, "cuDeviceGet", d.cuDeviceGet(0))
    ctx = call(log, "cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain(dev))
    call(log, "cuCtxSetCurrent", d.cuCtxSetCurrent(ctx))
    spin_mod = call(log, "cuModuleLoadData spin", d.cuModuleLoadData(data))
    spin = call(log, "cuModuleGetFunction spin", d.cuModuleGetFunction(spin_mod, b"spin"))
    if kind == "library":
        lib = call(
            log, "cuLibraryLoadData", d.cuLibraryLoadData(data, None, None, 0, None, None, 0)
        )
        kernel = call(log, "cuLibraryGetKernel other", d.cuLibraryGetKernel(lib, b"other"))
    else:
        other_mod = call(log, "cuModuleLoadData other", d.cuModuleLoadData(data))
    flags = d.CU_MEMHOSTALLOC_DEVICEMAP if hasattr(d, "CU_MEMHOSTALLOC_DEVICEMAP") else 2
    host = call(log, "cuMemHostAlloc", d.cuMemHostAlloc(4, flags))
    ctypes.c_int.from_address(int(host)).value = 0
    dflag = call(log, "cuMemHostGetDevicePointer", d.cuMemHostGetDevicePointer(host, 0))
    stream = call(log, "cuStreamCreate", d.cuStreamCreate(1))  # non-blocking
    y = call(log, "cuMemAlloc", d.cuMemAlloc(N * 4))
    fp = ctypes.c_void_p(int(dflag))
    params = (ctypes.c_void_p * 1)(ctypes.addressof(fp))
    err = d.cuLaunchKernel(spin, 1, 1, 1, 1, 1, 1, 0, stream, ctypes.addressof(params), 0)[0]
    log.append(f"launch spin: {name(err)}")
    done: dict[str, Any] = {"log": []}

    def second() -> None:
        call(done["log"], "cuCtxSetCurrent (thread)", d.cuCtxSetCurrent(ctx))
        t0 = time.perf_counter()
        if kind == "library":
            function = d.CUfunction(int(kernel))  # a CUkernel launches as a CUfunction
        else:
            function = call(
                done["log"], "cuModuleGetFunction other (thread)",
                d.cuModuleGetFunction(other_mod, b"other"),
            )  # fmt: skip
        done["lookup_s"] = round(time.perf_counter() - t0, 3)
        yp, n = ctypes.c_void_p(int(y)), ctypes.c_int(N)
        ps = (ctypes.c_void_p * 2)(ctypes.addressof(yp), ctypes.addressof(n))
        e = d.cuLaunchKernel(function, N // 256, 1, 1, 256, 1, 1, 0, 0, ctypes.addressof(ps), 0)[0]
        done["launch"] = name(e)
        done["launch_s"] = round(time.perf_counter() - t0, 3)

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    thread.join(timeout=10)
    stalled = thread.is_alive()
    ctypes.c_int.from_address(int(host)).value = 1  # release the spinning kernel either way
    thread.join(timeout=10)
    log.append(f"cuCtxSynchronize: {name(d.cuCtxSynchronize()[0])}")
    return {"log": log, "second": done, "stalled_10s": stalled, "unstalled": not thread.is_alive()}


SCENARIOS = {
    "fork_after_cuinit": lambda: fork_after("cuinit"),
    "fork_after_torch": lambda: fork_after("torch"),
    "foreign_stream": foreign_stream,
    "graph_capture": graph_capture,
    "context_destroyed": context_destroyed,
    "primary_reset": primary_reset,
    "lazy_stall": lambda: lazy_stall("module"),
    "lazy_stall_eager": lambda: lazy_stall("module"),
    "lazy_stall_library": lambda: lazy_stall("library"),
    "lazy_stall_library_eager": lambda: lazy_stall("library"),
}
ENV = {
    "lazy_stall": {"CUDA_MODULE_LOADING": "LAZY"},
    "lazy_stall_eager": {"CUDA_MODULE_LOADING": "EAGER"},
    "lazy_stall_library": {"CUDA_MODULE_LOADING": "LAZY"},
    "lazy_stall_library_eager": {"CUDA_MODULE_LOADING": "EAGER"},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(SCENARIOS[args.one](), default=str), flush=True)
        return 0
    results = {}
    for scenario in args.scenarios:
        env = {**os.environ, **ENV.get(scenario, {})}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--one", scenario],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            out, err, status = proc.stdout, proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out, err, status = str(exc.stdout or ""), str(exc.stderr or ""), "timeout after 60 s"
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        results[scenario] = {
            "result": json.loads(line[7:]) if line else None,
            "exit": status,
            "stderr_tail": err[-1500:],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        print(scenario, json.dumps(results[scenario], indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
