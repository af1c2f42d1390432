"""Running an engine: deserialize a plan in the current context and execute it on torch tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import BackendUnavailable
from ..base import Engine, ExecResult
from .inspect import can_run_here
from .loader import build_plan, builder_settings
from .logger import CapturingLogger, EngineBuildError, load_module, module_version
from .network import INPUT_NAME, OUTPUT_NAME, weights_digest

if TYPE_CHECKING:
    from pathlib import Path

    from ...engines.spec import ConvSpec

__all__ = [
    "TensorRTBackend",
]


@dataclass
class _TrtHandle:
    runtime: Any
    engine: Any
    context: Any
    logger: CapturingLogger
    plan_bytes: int


class TensorRTBackend:
    """Backend protocol over TensorRT / TensorRT-RTX, mirroring :class:`CudaReferenceBackend`.

    **Not yet executed on a GPU**: written against the API and checked only by building plans
    (TensorRT-RTX refuses the one GPU available, compute capability 9.0). ``build`` deserializes
    the engine in the context current on the calling thread (TensorRT, built on the CUDA runtime,
    makes the primary context current on a thread that has none); ``execute`` creates a stream in
    whatever context is current then and calls ``execute_async_v3``, whose False return and the
    logger's errors of that run go into the ExecResult.
    """

    #: Not known (never run under lazy-stall on a GPU): taken as releasing it, as pybind11
    #: bindings of long calls usually do; a deadlock would show as the test's hang timeout.
    launch_holds_gil = False

    def __init__(self, module_name: str, device: int, cache_dir: Path | None) -> None:
        self.module_name = module_name
        self.name = "tensorrt-rtx" if module_name == "tensorrt_rtx" else "tensorrt"
        self.description = f"{module_name} backend (one conv2d engine per spec)"
        self.device = device
        self.cache_dir = cache_dir
        self._trt = load_module(module_name)

    def _plan(self, spec: ConvSpec, weight: Any, bias: Any | None) -> bytes:
        if self.cache_dir is None:
            return build_plan(self.module_name, spec, weight, bias)
        from ...cuda import driver
        from ...engines.cache import get_or_build, key_parts_for

        version = driver.check("cuDriverGetVersion", driver.api().cuDriverGetVersion())
        parts = key_parts_for(
            self.module_name,
            module_version(self._trt),
            cuda_version=str(getattr(self._trt, "__cuda_version__", "n/a")),
            driver_version=str(version),
            target="portable",
            spec=spec,
            settings=builder_settings(self.module_name),
            weights=weights_digest(spec, weight, bias),
        )
        plan, _hit = get_or_build(
            parts, lambda: build_plan(self.module_name, spec, weight, bias), self.cache_dir
        )
        return plan

    def build(self, spec: ConvSpec, weight: Any, bias: Any | None) -> Engine:
        from ...cuda import driver

        reason = can_run_here(self.module_name, driver.compute_capability(self.device))
        if reason is not None:
            raise BackendUnavailable(reason)
        plan = self._plan(spec, weight, bias)
        trt = self._trt
        logger = CapturingLogger.create(trt)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise EngineBuildError(
                f"{self.module_name}: deserialize_cuda_engine returned None for {spec.name}",
                logger.errors(),
            )
        context = engine.create_execution_context()
        if context is None:
            raise EngineBuildError(
                f"{self.module_name}: create_execution_context returned None for {spec.name}",
                logger.errors(),
            )
        # Describe after deserializing: that is when TensorRT has made its context current.
        ctx = driver.current()
        return Engine(
            spec=spec,
            device=self.device,
            context=ctx,
            built_in=driver.describe_current(self.device),
            handle=_TrtHandle(runtime, engine, context, logger, len(plan)),
            details={"plan_bytes": len(plan)},
        )

    def execute(self, engine: Engine, x: Any, y: Any, stream: int | None = None) -> ExecResult:
        """Run once on ``x`` into ``y`` (torch tensors on the device): on a stream of its own,
        synchronously, or enqueued on the caller's ``stream``, left to the caller to
        synchronise."""
        from ...cuda import driver
        from ...errors import CudaError

        handle: _TrtHandle = engine.handle
        mark = handle.logger.mark()
        drv = driver.api()
        try:
            ran_in = driver.describe_current(self.device)
        except CudaError as exc:
            return ExecResult(exc.result_name, False, None, [str(exc)], exc.result_name)
        own = stream is None
        target: Any = None if own else stream  # the stream executed on
        returned: Any = None
        errors: list[str] = []
        try:
            for name, tensor in ((INPUT_NAME, x), (OUTPUT_NAME, y)):
                if not handle.context.set_tensor_address(name, int(tensor.data_ptr())):
                    errors.append(f"set_tensor_address({name!r}) returned False")
            if not errors:
                if own:
                    target = driver.check("cuStreamCreate", drv.cuStreamCreate(1))
                returned = handle.context.execute_async_v3(int(target))
                if own:
                    driver.check("cuStreamSynchronize", drv.cuStreamSynchronize(target))
        except CudaError as exc:
            errors.append(str(exc))
        finally:
            if own and target is not None:
                drv.cuStreamDestroy(target)
        errors = handle.logger.errors(mark) + errors
        ok = returned is True and not errors
        signature = None if ok else (errors[0] if errors else "execute_async_v3 returned False")
        return ExecResult(returned, ok, ran_in, errors, signature)

    def close(self, engine: Engine) -> None:
        """Drop context, engine and runtime in that order (TensorRT's required teardown order)."""
        handle: _TrtHandle | None = engine.handle
        if handle is None:
            return
        engine.handle = None
        for attr in ("context", "engine", "runtime"):
            setattr(handle, attr, None)
