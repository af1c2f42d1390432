"""Engine cache: a cold build of the whole conv matrix vs a warm read of it, in one process.

Builds every spec of ``engines/conv_matrix.toml`` with TensorRT-RTX (no GPU needed) through
:func:`pytest_trtctx.engines.cache.get_or_build` into a fresh cache folder (cold: every entry
misses and is built), then reads them all back (warm: every entry hits), and prints both wall
times, their ratio and the plan sizes. The TensorRT-RTX import and a first throw-away build are
done before timing, so the cold figure is build time, not library loading.

Usage: python benchmarks/bench_engine_cache.py [--module tensorrt_rtx] [--json out.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_trtctx.backends import tensorrt as T
from pytest_trtctx.engines import cache as ec
from pytest_trtctx.engines.matrix import ConvSpec, default_matrix_path, load_matrix

ROOT = Path(__file__).resolve().parent.parent


def weights(spec: ConvSpec) -> tuple[Any, Any | None]:
    import numpy as np

    rng = np.random.default_rng(0)
    weight = rng.standard_normal(spec.weight_shape).astype(np.float32)
    bias = rng.standard_normal(spec.out_channels).astype(np.float32) if spec.bias else None
    return weight, bias


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", default="tensorrt_rtx", choices=T.MODULES)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    trt = T.load_module(args.module)
    specs = load_matrix(default_matrix_path(ROOT))
    inputs = {spec.name: weights(spec) for spec in specs}
    parts = {
        spec.name: ec.key_parts_for(
            args.module,
            T.module_version(trt),
            cuda_version="n/a",
            driver_version="n/a",
            target="portable",
            spec=spec,
            settings=T.builder_settings(args.module),
            weights=T.weights_digest(spec, *inputs[spec.name]),
        )
        for spec in specs
    }
    T.build_plan(args.module, specs[0], *inputs[specs[0].name])  # warm up the library

    with tempfile.TemporaryDirectory(prefix="trtctx-engine-cache-") as tmp:
        cache = Path(tmp)
        sizes: dict[str, int] = {}

        def build(spec: ConvSpec) -> bytes:
            return T.build_plan(args.module, spec, *inputs[spec.name])

        def one_pass() -> tuple[float, int]:
            hits = 0
            t0 = time.perf_counter()
            for spec in specs:
                plan, hit = ec.get_or_build(parts[spec.name], functools.partial(build, spec), cache)
                sizes[spec.name] = len(plan)
                hits += hit
            return time.perf_counter() - t0, hits

        cold, cold_hits = one_pass()
        warm, warm_hits = one_pass()

    n = len(specs)
    print(f"{args.module} {T.module_version(trt)}: {n} specs")
    print(f"cold (build + write): {cold:8.3f} s  ({cold_hits} hits)  {cold / n * 1e3:7.1f} ms/spec")
    print(f"warm (read + verify): {warm:8.3f} s  ({warm_hits} hits)  {warm / n * 1e3:7.2f} ms/spec")
    print(f"cold / warm: {cold / warm:.0f}x")
    values = sorted(sizes.values())
    print(
        f"plan sizes: min {values[0]:,} B, median {int(statistics.median(values)):,} B, "
        f"max {values[-1]:,} B, total {sum(values):,} B"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"module": args.module, "specs": n, "cold_s": cold, "warm_s": warm, "sizes": sizes},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
