"""The main job's wall time: the conv matrix across all orders, in parallel, cold and warm.

Runs ``pytest tests/regression --trtctx-order=all`` twice with a fresh kernel cache folder
(cold: NVRTC compiles; warm: cubins come from disk), each with ``--trtctx-workers`` processes,
and compares the wall time with the serial sum of the tests' own durations (junit XML).

Usage: python benchmarks/bench_matrix.py [--workers auto] [--isolate test] [--json out.json]
                                         [--out DIR]

``--compare-xdist N`` instead times the two ways to run N tests at once, each with an empty
cache, in one run: the plugin's own workers (``--trtctx-workers=N``) and pytest-xdist's
(``-n N``, each xdist worker forking every test it is handed), with their ratio.

``--compare-prebuild`` times the main job's two modes in one run, each with an empty cache: one
fresh process per test (``--trtctx-isolate=test``) and one per order with every engine built
right after the order's recipe (``--trtctx-isolate=order --trtctx-prebuild``), with their ratio;
with ``--out`` their reports are kept, to be diffed.

``--compare-trace`` times the main job as ``./dev matrix`` runs it (one process per order, engines
prebuilt) with and without the context tracer (``--trtctx-trace``), in one run, with the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(
    cache: Path,
    workers: str,
    isolate: str,
    xml: Path,
    log: Path | None = None,
    report: Path | None = None,
    durations: int = 0,
    xdist: int = 0,
    extra: tuple[str, ...] = (),
) -> dict[str, float | int | str]:
    cmd = [
        sys.executable, "-m", "pytest", "tests/regression", "-q", "-rxs", "-p", "no:cacheprovider",
        "--trtctx-order=all", f"--trtctx-isolate={isolate}",
        f"--trtctx-cache-dir={cache}", f"--junitxml={xml}",
    ]  # fmt: skip
    cmd += ["-p", "xdist", "-n", str(xdist)] if xdist else [f"--trtctx-workers={workers}"]
    cmd += list(extra)
    if report is not None:
        cmd.append(f"--trtctx-report={report}")
    if durations:
        cmd.append(f"--durations={durations}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if log is not None:
        log.write_text(proc.stdout + (f"\n--- stderr ---\n{proc.stderr}" if proc.stderr else ""))
    suite = ET.parse(xml).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    assert suite is not None
    serial = sum(float(case.get("time", 0)) for case in suite.iter("testcase"))
    return {
        "exit": proc.returncode,
        "wall_s": round(wall, 2),
        "serial_sum_s": round(serial, 2),
        "speedup": round(serial / wall, 2) if wall else 0.0,
        "tests": int(suite.get("tests", 0)),
        "summary": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="auto")
    ap.add_argument("--isolate", default="test", choices=["test", "order"])
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--out",
        type=Path,
        help="save each run's terminal output (matrix-cold.log, matrix-warm.log), JUnit XML "
        "(matrix-*.xml) and JSON report (report-cold.json, report-warm.json) in this folder",
    )
    ap.add_argument("--cold-only", action="store_true", help="one run, with an empty cache")
    ap.add_argument("--durations", type=int, default=0, help="pytest --durations=N")
    ap.add_argument("--compare-xdist", type=int, default=0, metavar="N")
    ap.add_argument("--compare-prebuild", action="store_true")
    ap.add_argument("--compare-trace", action="store_true")
    args = ap.parse_args()

    def saved(name: str) -> Path | None:
        return args.out / name if args.out else None

    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, float | int | str]] = {}
    if args.compare_prebuild or args.compare_trace:
        modes: tuple[tuple[str, str, tuple[str, ...]], ...] = (
            ("per-test", "test", ()),
            ("per-order-prebuilt", "order", ("--trtctx-prebuild",)),
        )
        if args.compare_trace:
            modes = (
                ("untraced", "order", ("--trtctx-prebuild",)),
                ("traced", "order", ("--trtctx-prebuild", "--trtctx-trace")),
            )
        for label, isolate, extra in modes:
            with tempfile.TemporaryDirectory() as tmp:
                xml = saved(f"matrix-{label}.xml") or Path(tmp) / f"{label}.xml"
                runs[label] = run(
                    Path(tmp) / "cache", args.workers, isolate, xml, saved(f"matrix-{label}.log"),
                    saved(f"report-{label}.json"), 0, 0, extra,
                )  # fmt: skip
        (a, _i, _e), (b, _i2, _e2) = modes
        ratio = float(runs[b]["wall_s"]) / float(runs[a]["wall_s"])
        text = json.dumps({**runs, f"{b}_over_{a}": round(ratio, 3)}, indent=2)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 1 if any(r["exit"] != 0 for r in runs.values()) else 0
    if args.compare_xdist:
        n = args.compare_xdist
        for label, workers, xdist in (("trtctx-workers", str(n), 0), ("xdist", "1", n)):
            with tempfile.TemporaryDirectory() as tmp:
                xml = saved(f"matrix-{label}.xml") or Path(tmp) / f"{label}.xml"
                runs[label] = run(
                    Path(tmp) / "cache", workers, "test", xml, saved(f"matrix-{label}.log"),
                    saved(f"report-{label}.json"), 0, xdist,
                )  # fmt: skip
        ratio = float(runs["xdist"]["wall_s"]) / float(runs["trtctx-workers"]["wall_s"])
        text = json.dumps({"n": n, **runs, "xdist_over_trtctx_workers": round(ratio, 3)}, indent=2)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 1 if any(r["exit"] != 0 for r in runs.values()) else 0
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for label in ("cold", "warm")[: 1 if args.cold_only else 2]:
            xml = saved(f"matrix-{label}.xml") or Path(tmp) / f"{label}.xml"
            runs[label] = run(
                cache, args.workers, args.isolate, xml, saved(f"matrix-{label}.log"),
                saved(f"report-{label}.json"), args.durations,
            )  # fmt: skip
    text = json.dumps({"workers": args.workers, "isolate": args.isolate, **runs}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    failed = [label for label, r in runs.items() if r["exit"] != 0]
    if failed:
        print(f"bench_matrix: pytest failed in the {' and '.join(failed)} run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
