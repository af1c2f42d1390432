"""What the TensorRT backend's tests share: the matrix's specs and their weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_trtctx.engines.matrix import default_matrix_path, load_matrix
from pytest_trtctx.engines.spec import ConvSpec

ROOT = Path(__file__).resolve().parents[3]
SPECS = load_matrix(default_matrix_path(ROOT))
MODULE = "tensorrt_rtx"


def weights_for(spec: ConvSpec, seed: int = 0) -> tuple[Any, Any | None]:
    """Deterministic float32 weights (converted to the spec's dtype by the backend)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(spec.weight_shape).astype(np.float32)
    bias = rng.standard_normal(spec.out_channels).astype(np.float32) if spec.bias else None
    return weight, bias
