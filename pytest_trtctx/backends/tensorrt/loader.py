"""Building a plan: the builder's options (compatibility, target) and the serialized engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import BackendUnavailable
from .inspect import enum_targets
from .logger import CapturingLogger, EngineBuildError, load_module, module_version
from .network import CONV_LAYER_NAME, build_conv_network

if TYPE_CHECKING:
    from ...engines.spec import ConvSpec

__all__ = [
    "build_plan",
    "builder_settings",
]


def _target_enum(trt: Any, target: tuple[int, int]) -> Any:
    """``trt.ComputeCapability.SM<major><minor>`` -- TensorRT-RTX's ahead-of-time targets."""
    enum = getattr(trt, "ComputeCapability", None)
    if enum is None or not hasattr(trt.IBuilderConfig, "set_compute_capability"):
        raise BackendUnavailable(
            f"{trt.__name__} {module_version(trt)} cannot build for a chosen compute capability "
            f"({target[0]}.{target[1]}): it has no IBuilderConfig.set_compute_capability and "
            "builds for the GPU it runs on; pass target=None"
        )
    member = getattr(enum, f"SM{target[0]}{target[1]}", None)
    if member is None:
        known = ", ".join(f"{a}.{b}" for a, b in enum_targets(trt))
        raise BackendUnavailable(
            f"{trt.__name__} {module_version(trt)} cannot build for compute capability "
            f"{target[0]}.{target[1]}; its build targets (ComputeCapability) are {known}"
        )
    return member


def builder_settings(
    module_name: str,
    *,
    target: tuple[int, int] | None = None,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
) -> dict[str, object]:
    """The settings :func:`build_plan` applies, as a JSON-friendly dict (an engine cache key part).

    ``target`` None is the portable build: TensorRT-RTX then builds for every compute capability
    it supports ("leave the compute capability unset so that the engine runs on every supported
    GPU", its own message); full TensorRT builds for the GPU it runs on.
    """
    return {
        "module": module_name,
        "target": "portable" if target is None else f"{target[0]}.{target[1]}",
        "strongly_typed": True,
        "version_compatible": version_compatible,
        "hardware_compatibility": hardware_compatibility or "NONE",
        "layer": CONV_LAYER_NAME,
    }


def _apply_options(
    trt: Any,
    config: Any,
    logger: CapturingLogger,
    *,
    target: tuple[int, int] | None,
    version_compatible: bool,
    hardware_compatibility: str | None,
) -> None:
    """Set the compatibility options on ``config``; BackendUnavailable when one cannot be had.

    Support is detected by asking the library, not by version: TensorRT-RTX 1.7 has the
    ``hardware_compatibility_level`` property but ignores it (it logs "setHardwareCompatibilityLevel
    () is unsupported in TensorRT-RTX" and reads back NONE), so the value is read back to check.
    """
    if target is not None:
        member = _target_enum(trt, target)
        config.num_compute_capabilities = 1
        if not config.set_compute_capability(member, 0):
            raise BackendUnavailable(
                f"{trt.__name__}: set_compute_capability({member}) was refused",
            )
    if version_compatible:
        flag = getattr(trt.BuilderFlag, "VERSION_COMPATIBLE", None)
        if flag is None:
            raise BackendUnavailable(
                f"{trt.__name__} {module_version(trt)} has no BuilderFlag.VERSION_COMPATIBLE"
            )
        config.set_flag(flag)
    if hardware_compatibility is not None:
        levels = getattr(trt, "HardwareCompatibilityLevel", None)
        level = getattr(levels, hardware_compatibility, None) if levels is not None else None
        if level is None or not hasattr(config, "hardware_compatibility_level"):
            raise BackendUnavailable(
                f"{trt.__name__} {module_version(trt)} has no hardware compatibility level "
                f"{hardware_compatibility!r}"
            )
        mark = logger.mark()
        config.hardware_compatibility_level = level
        # Read back once: TensorRT-RTX's getter is an unsupported path too (it logs an error),
        # and a second read once crashed the process (SIGSEGV).
        got = config.hardware_compatibility_level
        if got != level:
            said = "; ".join(logger.warnings(mark) + logger.errors(mark)) or "no message"
            raise BackendUnavailable(
                f"{trt.__name__} {module_version(trt)} ignores hardware_compatibility_level="
                f"{hardware_compatibility} (it reads back {got}); the library said: {said}"
            )


def build_plan(
    module_name: str,
    spec: ConvSpec,
    weight: Any,
    bias: Any | None,
    *,
    target: tuple[int, int] | None = None,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
) -> bytes:
    """Build ``spec``'s convolution with ``module_name`` and return the serialized plan.

    Needs no GPU with TensorRT-RTX (``target`` None or a compute capability it knows). Raises
    BackendUnavailable when the module or a requested option is missing here (including a
    version-compatible build whose lean runtime library cannot be loaded), EngineBuildError with
    the logger's errors when the builder refuses.
    """
    trt = load_module(module_name)
    logger = CapturingLogger.create(trt)
    builder = trt.Builder(logger)
    net = build_conv_network(trt, spec, weight, bias, builder=builder, logger=logger)
    config = builder.create_builder_config()
    _apply_options(
        trt,
        config,
        logger,
        target=target,
        version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility,
    )
    mark = logger.mark()
    plan = builder.build_serialized_network(net.network, config)
    errors = logger.errors(mark)
    if plan is None or plan.nbytes == 0:
        if version_compatible and any("Unable to load library" in e for e in errors):
            raise BackendUnavailable(
                f"{module_name} {module_version(trt)} cannot build a version-compatible plan "
                "here: " + "; ".join(errors)
            )
        raise EngineBuildError(
            f"{module_name} {module_version(trt)} could not build {spec.name} "
            f"({builder_settings(module_name, target=target)['target']} target)",
            errors,
        )
    data = bytes(plan)
    del net  # the weights in net.keep had to live until here
    return data
