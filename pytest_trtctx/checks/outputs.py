"""Output checks: written, non-zero, finite, close to a CPU reference, bitwise stable.

Tensors are torch tensors; torch is imported inside the functions that need it. A failed check is
a :class:`CheckFailure` (an ``AssertionError``, so pytest shows it as a test failure) carrying a
short *signature* — ``backend: CUDA_ERROR_INVALID_HANDLE``, ``sentinel: output not written`` — that
known-failure declarations and the summary match on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..messages import MARK_BITWISE_STABLE, MARK_NONZERO

#: Sentinel bit patterns written into plugin-owned outputs before a run, per dtype: quiet NaNs
#: with a payload no arithmetic produces, so "still equal to the sentinel" means "never written".
SENTINEL_BITS = {"float32": 0x7FDADBAD, "float16": 0x7E5A, "bfloat16": 0x7FDA}


def _dtype_name(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


def _signed_sentinel(t: Any) -> int | None:
    bits = SENTINEL_BITS.get(_dtype_name(t))
    if bits is None:
        return None
    size = 8 * t.element_size()
    return bits - (1 << size) if bits >= 1 << (size - 1) else bits


#: (atol, rtol) against a float32 CPU reference, per dtype, or per arithmetic where an engine
#: computes a dtype in another one: ``tfloat32`` is float32 data multiplied on tensor cores with
#: a 10-bit mantissa (cuDNN's float32 engines with the TENSOR_CORE note, which torch allows for
#: its own convolutions by default: torch.backends.cudnn.allow_tf32), so it is checked between
#: float32 and float16 (whose mantissa is as short, but whose output is rounded too).
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-4),
    "tfloat32": (5e-3, 5e-3),
    "float16": (1e-2, 1e-2),
    "bfloat16": (4e-2, 4e-2),
}


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. ``signature`` is set only when it failed."""

    check: str
    ok: bool
    detail: str
    signature: str | None = None


class CheckFailure(AssertionError):
    """A run's outputs failed a check. The first failed check gives the signature."""

    def __init__(
        self, results: list[CheckResult], diagnosis: str = "", title: str = "", plain: bool = False
    ) -> None:
        self.results = results
        #: Raised after the test body returned (the markers' checks): shown without a traceback.
        self.plain = plain
        failed = [r for r in results if not r.ok]
        self.signature = failed[0].signature or failed[0].check if failed else ""
        self.diagnosis = diagnosis
        lines = [title or f"trtctx check failed: {self.signature}"]
        for r in results:
            lines.append(f"  [{'ok' if r.ok else 'FAIL'}] {r.check}: {r.detail}")
        if diagnosis:
            lines.append(diagnosis)
        super().__init__("\n".join(lines))


def _int_view(t: Any) -> Any:
    import torch

    by_size = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}
    return t.view(by_size[t.element_size()])


def sentinel_fill(t: Any) -> Any:
    """Fill a float32/float16/bfloat16 tensor with the sentinel bit pattern, in place."""
    signed = _signed_sentinel(t)
    if signed is None:
        raise TypeError(f"sentinel needs a float32/float16/bfloat16 tensor, got {t.dtype}")
    _int_view(t).fill_(signed)
    return t


def untouched(t: Any) -> int:
    """How many elements of ``t`` still hold the sentinel."""
    signed = _signed_sentinel(t)
    if signed is None:
        return 0
    return int((_int_view(t) == signed).sum().item())


def sha256(t: Any) -> str:
    """SHA-256 of a tensor's bytes (contiguous, on the CPU)."""
    data = t.detach().contiguous().cpu()
    return hashlib.sha256(_int_view(data).numpy().tobytes()).hexdigest()


def output_checks(
    name: str, t: Any, *, owned: bool, reference: Any | None = None, dtype: str | None = None
) -> list[CheckResult]:
    """The written / non-zero / finite / reference checks for one output tensor."""
    import torch

    results: list[CheckResult] = []
    cpu = t.detach().cpu()
    n = cpu.numel()
    if owned and cpu.is_floating_point():
        left = untouched(cpu)
        results.append(
            CheckResult(
                "sentinel",
                left == 0,
                f"{name}: {left} of {n} elements never written" if left else f"{name}: all written",
                None if left == 0 else "sentinel: output not written",
            )
        )
        if left:
            return results  # the rest would only repeat it: NaN sentinels everywhere
    values = cpu.float() if cpu.is_floating_point() else cpu
    zeros = int((values == 0).sum().item())
    results.append(
        CheckResult(
            "nonzero",
            n == 0 or zeros < n,
            f"{name}: all {n} elements are zero"
            if n and zeros == n
            else f"{name}: {zeros}/{n} zero",
            "nonzero: output all zeros" if n and zeros == n else None,
        )
    )
    if cpu.is_floating_point():
        bad = int((~torch.isfinite(values)).sum().item())
        results.append(
            CheckResult(
                "finite",
                bad == 0,
                f"{name}: {bad} NaN/Inf of {n}" if bad else f"{name}: all finite",
                "finite: output has NaN/Inf" if bad else None,
            )
        )
    if reference is not None:
        atol, rtol = TOLERANCES.get(dtype or "float32", TOLERANCES["float32"])
        ref = reference.detach().cpu().float()
        if ref.shape != values.shape:
            results.append(
                CheckResult(
                    "reference",
                    False,
                    f"{name}: shape {tuple(values.shape)} != reference {tuple(ref.shape)}",
                    "reference: shape differs",
                )
            )
        else:
            diff = (values - ref).abs()
            allowed = atol + rtol * ref.abs()
            over = diff > allowed
            count = int(over.sum().item())
            worst = float(diff.max().item()) if n else 0.0
            if count:
                idx = int(over.flatten().nonzero()[0].item())
                detail = (
                    f"{name}: {count}/{n} elements outside atol={atol:g} rtol={rtol:g}; "
                    f"max |diff| {worst:.3g}; first at flat index {idx}: "
                    f"{values.flatten()[idx].item():.6g} vs {ref.flatten()[idx].item():.6g}"
                )
            else:
                detail = f"{name}: within atol={atol:g} rtol={rtol:g} (max |diff| {worst:.3g})"
            if dtype is not None and dtype != _dtype_name(cpu):
                detail += f" ({dtype} arithmetic)"
            results.append(
                CheckResult(
                    "reference", count == 0, detail, "reference: output differs" if count else None
                )
            )
    return results


def first_difference(a: Any, b: Any) -> tuple[tuple[int, ...], Any, Any] | None:
    """Index (unravelled) and values of the first bitwise difference, or None if identical."""
    ca, cb = a.detach().contiguous().cpu(), b.detach().contiguous().cpu()
    if ca.shape != cb.shape or ca.dtype != cb.dtype:
        return (), f"{tuple(ca.shape)} {ca.dtype}", f"{tuple(cb.shape)} {cb.dtype}"
    ne = (_int_view(ca) != _int_view(cb)).flatten().nonzero()
    if ne.numel() == 0:
        return None
    flat = int(ne[0].item())
    index: list[int] = []
    rest = flat
    for dim in reversed(ca.shape):
        index.append(rest % dim)
        rest //= dim
    return tuple(reversed(index)), ca.flatten()[flat].item(), cb.flatten()[flat].item()


@dataclass
class Outputs:
    """The outputs a test hands to the plugin (fixture ``trtctx_outputs``).

    ``empty`` allocates a plugin-owned output filled with the sentinel, so the checks can tell an
    output that was never written from one that was written with zeros.
    """

    runs: list[dict[str, Any]] = field(default_factory=lambda: [{}])
    owned: set[int] = field(default_factory=set)

    def empty(self, shape: Iterable[int], dtype: Any = None, device: Any = None) -> Any:
        import torch

        t = torch.empty(tuple(shape), dtype=dtype or torch.float32, device=device)
        sentinel_fill(t)
        self.owned.add(id(t))
        return t

    def add(self, name: str, tensor: Any) -> Any:
        """Hand ``tensor`` to the plugin under ``name``; returns it."""
        current = self.runs[-1]
        if name in current:
            raise ValueError(f"trtctx_outputs: an output named {name!r} was already added")
        current[name] = tensor
        return tensor

    @property
    def current(self) -> Mapping[str, Any]:
        return self.runs[-1]

    def next_run(self) -> None:
        self.runs.append({})


def nonzero_failures(outputs: Outputs) -> list[CheckResult]:
    results: list[CheckResult] = []
    if not outputs.current:
        return [
            CheckResult(
                "outputs",
                False,
                "the test handed no outputs to the plugin: add them with trtctx_outputs.add(...) "
                "or run engines through trtctx.run(...)",
                "outputs: none handed over",
            )
        ]
    for name, t in outputs.current.items():
        results.extend(output_checks(name, t, owned=id(t) in outputs.owned))
    return results


def bitwise_failures(outputs: Outputs) -> list[CheckResult]:
    """Compare every run's outputs with the first run's, bit for bit."""
    first = outputs.runs[0]
    results: list[CheckResult] = []
    if not first:
        return nonzero_failures(outputs)
    for run_no, run in enumerate(outputs.runs[1:], start=2):
        if set(run) != set(first):
            results.append(
                CheckResult(
                    "bitwise",
                    False,
                    f"run {run_no} handed outputs {sorted(run)}, run 1 handed {sorted(first)}",
                    "bitwise: different outputs",
                )
            )
            continue
        for name in first:
            diff = first_difference(first[name], run[name])
            if diff is None:
                continue
            index, va, vb = diff
            results.append(
                CheckResult(
                    "bitwise",
                    False,
                    f"{name}: run {run_no} differs from run 1 first at index {index}: "
                    f"{va!r} vs {vb!r}; sha256 run 1 {sha256(first[name])[:16]}, "
                    f"run {run_no} {sha256(run[name])[:16]}",
                    "bitwise: outputs differ between runs",
                )
            )
    if not results:
        n = len(outputs.runs)
        results.append(
            CheckResult("bitwise", True, f"{len(first)} output(s) identical in {n} runs")
        )
    return results


def run_checked(body: Callable[[], object], outputs: Outputs, *, runs: int, nonzero: bool) -> None:
    """Run a test body ``runs`` times and check its outputs as its markers ask: after each run
    (``trtctx_nonzero``) and across runs, bit for bit (``trtctx_bitwise_stable``, runs > 1).
    Raises :class:`CheckFailure` titled with the markers whose checks failed."""
    results: list[CheckResult] = []
    for run in range(runs):
        if run:
            outputs.next_run()
        body()
        if nonzero:
            results += [
                r
                if runs == 1
                else CheckResult(r.check, r.ok, f"run {run + 1}: {r.detail}", r.signature)
                for r in nonzero_failures(outputs)
            ]
    if runs > 1:
        results += bitwise_failures(outputs)
    if not all(r.ok for r in results):
        which = " and ".join(
            m for m, on in ((MARK_NONZERO, nonzero), (MARK_BITWISE_STABLE, runs > 1)) if on
        )
        title = f"{which}: {CheckFailure(results).signature}"
        raise CheckFailure(results, title=title, plain=True)
