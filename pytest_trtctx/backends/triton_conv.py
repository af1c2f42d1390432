"""The Triton backend's convolution kernel: a direct conv2d written in Triton.

This module imports ``triton`` at its top (``@triton.jit`` needs it), so nothing imports it
but :mod:`.triton` and the vendor probe, inside the functions that build a kernel: importing
``triton`` initialises CUDA on a GPU host, and which library initialises CUDA first is what the
plugin tests.

One program computes :data:`BLOCK` outputs of the flattened ``(n, k, p, q)`` output (NCHW,
contiguous, torch's ``conv2d`` semantics): for each it walks its group's input channels and the
``R x S`` kernel window (unrolled: ``R`` and ``S`` are compile-time constants), loads the input
where the dilated, strided window falls inside it (zero padding elsewhere), accumulates in
float32 and stores in the output's dtype. Every spec of the matrix fits: float32, float16 and
bfloat16; groups (depthwise included), stride, padding and dilation per axis; with or without
bias. Indices are 32-bit: the matrix refuses a spec whose tensors exceed that
(:data:`pytest_trtctx.engines.spec.MAX_ELEMENTS`).
"""

from __future__ import annotations

from typing import Any

import triton
import triton.language as tl

#: Outputs per program. Small enough for the matrix's smallest outputs, large enough that a spec's
#: grid stays in the thousands at most.
BLOCK = 128
#: The kernel's name, as the driver and CUPTI see it.
KERNEL_NAME = "trtctx_conv2d_direct"


@triton.jit
def trtctx_conv2d_direct(
    x_ptr,
    w_ptr,
    b_ptr,
    y_ptr,
    total,
    C,
    H,
    W,
    K,
    P,
    Q,
    stride_h,
    stride_w,
    pad_h,
    pad_w,
    dil_h,
    dil_w,
    k_per_group,
    C_PER_GROUP: tl.constexpr,
    R: tl.constexpr,
    S: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    inside = offs < total
    q = offs % Q
    rest = offs // Q
    p = rest % P
    rest = rest // P
    k = rest % K
    n = rest // K
    first_channel = (k // k_per_group) * C_PER_GROUP
    acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    # A compile-time bound: the interpreter cannot take a scalar argument as a loop bound.
    for c in range(0, C_PER_GROUP):
        channel = first_channel + c
        for r in tl.static_range(R):
            ih = p * stride_h - pad_h + r * dil_h
            row_ok = inside & (ih >= 0) & (ih < H)
            for s in tl.static_range(S):
                iw = q * stride_w - pad_w + s * dil_w
                ok = row_ok & (iw >= 0) & (iw < W)
                xv = tl.load(x_ptr + ((n * C + channel) * H + ih) * W + iw, mask=ok, other=0.0)
                wv = tl.load(
                    w_ptr + ((k * C_PER_GROUP + c) * R + r) * S + s, mask=inside, other=0.0
                )
                acc += xv.to(tl.float32) * wv.to(tl.float32)
    if HAS_BIAS:
        acc += tl.load(b_ptr + k, mask=inside, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, acc.to(y_ptr.dtype.element_ty), mask=inside)


def kernel() -> Any:
    """The jitted kernel (an interpreted function under ``TRITON_INTERPRET=1``)."""
    return trtctx_conv2d_direct
