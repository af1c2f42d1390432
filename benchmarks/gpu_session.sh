#!/usr/bin/env bash
# Everything that needs the GPU host, in one call, each step time-boxed so that one hang cannot
# eat the session's GPU time. Logs go to a work folder as they are written, and the folder is
# packed into $OUT/results.tgz after every step (one archive to copy back from the GPU host).
#   device run:  bash benchmarks/gpu_session.sh          (about 8 minutes on the H100)
#   extra steps: orders (the GPU tests alone, verbose), cuda_init (concurrent context creation), matrix8 (8 workers, --durations),
#                scale (the main job with 4, 8, 12 and 16 workers), main (the main job once, cold, with
#                its report: on two GPUs the one run where every order, multi-device too, runs),
#                who_inits (which NVRTC and TensorRT-RTX calls initialise CUDA), installed (the
#                suite from the wheel in .pkg, from an empty folder, diffed against ./dev matrix),
#                hazards (benchmarks/probe_hazards.py), hazards_suite (the main job with the
#                context hazards, with its report), per_test (benchmarks/bench_per_test.py),
#                trace_bench (the main job with and without --trtctx-trace), own_scenario (the
#                README's user scenario example), diff_run9 (matrix and hazards_suite's reports
#                against the committed run 9 reports), vendor_probe, vendor_tests, triton_suite,
#                cudnn_suite (the vendor backends: benchmarks/probe_vendor.py, their GPU tests,
#                the main job with --trtctx-backend=triton / cudnn, CUDNN_PLANS slots),
#                hazards_timeline (benchmarks/bench_hazards.py), startup (benchmarks/bench_startup.py),
#                contexts (benchmarks/bench_contexts.py), cudnn_timeline (the same over cuDNN),
#                some_tests (the tests SOME_TESTS names), cd_tests (context-destroyed's GPU tests),
#                dev_speed (./dev matrix's wall, twice as it comes, twice with the reference alone),
#                hazards_auto (the hazards job with the reference backend alone)
#   one part:    STEPS="orders rtx" bash benchmarks/gpu_session.sh
# TensorRT-RTX is not installed on the GPU host and has no registry there: where a folder .rtx
# holds what benchmarks/carry_rtx.sh packs (the cp312 bindings wheel, the xz-compressed
# libtensorrt_rtx), it is installed under /tmp/site and put on the path of the steps that test it.
# cupti-python (the tracer's extra) is not on the GPU host either: where a folder .whl holds its
# wheel for that Python (python3 -m pip download --no-deps --only-binary=:all: cupti-python==V),
# it is installed under /tmp/site too.
# The installed step needs the wheel of this package in .pkg (python3 -m build --wheel -o .pkg).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-gpu-out}
work=$(mktemp -d /tmp/trtctx-gpu.XXXX)
mkdir -p "$out"
export PYTHONUNBUFFERED=1
pack() { tar -czf "$out/results.tgz" -C "$work" .; }
die() { echo "gpu_session: $*" >&2; exit 1; }
python3 -m pip install -q --no-deps --no-build-isolation -e . > "$work/install.log" 2>&1 \
    || { cat "$work/install.log"; die "installing this package failed"; }
# The wheel from .pkg, first on PYTHONPATH, run from an empty folder (a function: step runs it
# through bash -c, so it is exported; its arguments are the work folder and the extra site).
installed() {
    local work=$1 site=$2 inst=/tmp/trtctx-installed empty
    empty=$(mktemp -d /tmp/trtctx-empty.XXXX)
    rm -rf "$inst" && python3 -m pip install -q --no-index --no-deps --target "$inst" .pkg/*.whl || return
    (cd "$empty" && PYTHONPATH="$inst${site:+:$site}" python3 -c "import pytest_trtctx; print('imported from', pytest_trtctx.__file__)" \
        && PYTHONPATH="$inst${site:+:$site}" python3 -m pytest --pyargs pytest_trtctx.suite --trtctx-order=all \
            --trtctx-isolate=order --trtctx-prebuild -p no:cacheprovider -q --trtctx-report="$work/report-installed.json")
}
export -f installed
site=
if [ -d .whl ]; then
    site=/tmp/site
    mkdir -p "$site"
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl \
        || die "installing the wheels from .whl failed"
fi
if [ -d .rtx ]; then
    site=/tmp/site
    mkdir -p "$site"
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .rtx/*.whl \
        || die "installing the TensorRT-RTX bindings wheel from .rtx failed"
    cp -r .rtx/site/. "$site/" || die "copying .rtx/site failed"
    for lib in .rtx/*.so.1.xz; do
        name=$(basename "$lib" .xz)
        xz -d -T0 -c "$lib" > "$site/tensorrt_rtx_libs/$name" || die "unpacking $lib failed"
    done
    PYTHONPATH=$site python3 -c "import tensorrt_rtx" || die "TensorRT-RTX from .rtx does not import"
fi
rtx=(env)  # put before a command that should see TensorRT-RTX and cupti-python
[ -n "${site:-}" ] && rtx=(env "PYTHONPATH=$site")
{
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
    nproc
    python3 -c "import sys, torch; from importlib.metadata import version as v; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda-bindings', v('cuda-bindings'), 'pytest', v('pytest'))"
    "${rtx[@]}" python3 -c "import tensorrt_rtx as t; print('tensorrt_rtx', t.__version__)" 2>&1 | tail -1
    "${rtx[@]}" python3 -c "from importlib.metadata import version as v; print('cupti-python', v('cupti-python'), 'nvidia-cuda-cupti', v('nvidia-cuda-cupti'))" 2>&1 | tail -1
    date -u +%Y-%m-%dT%H:%MZ
} > "$work/env.txt" 2>&1
cat "$work/env.txt"
pack

steps=" ${STEPS:-tests bench_matrix diff rtx bench_isolation} "

step() {  # step NAME SECONDS COMMAND...
    local name=$1 secs=$2
    shift 2
    [[ $steps == *" $name "* ]] || return 0
    local t0=$SECONDS
    timeout -s ABRT "$secs" "$@" > "$work/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc in $((SECONDS - t0)) s: $(grep -E '(passed|failed|skipped|error)' "$work/$name.log" | tail -1)"
    pack
}

# The suite installed from its wheel, from an empty folder (the editable install of this checkout
# is on the path too, after PYTHONPATH: the log shows which one was imported), as ./dev matrix
# runs it; its report is diffed against ./dev matrix's of the same session (step matrix).
step installed 200 bash -c 'installed "$@"' _ "$work" "$site"
# ./dev matrix twice from the shell, wall seconds each (this package is installed above, as on a
# prepared host: ./dev should call no pip).
# Twice as it comes (the vendor backends installed run too), then twice with the reference alone.
step dev_speed 160 bash -c 'TIMEFORMAT="wall %R s"; for b in auto,vendors auto; do for i in 1 2; do \
    echo "--trtctx-backend=$b call $i"; { time ./dev matrix -q -p no:cacheprovider --trtctx-backend=$b \
    > /dev/null 2>&1; } 2>&1; done; done' 
step matrix 120 "${rtx[@]}" ./dev matrix -q --trtctx-report="$work/report-matrix.json"
step installed_diff 20 bash -c "pytest-trtctx diff --ignore-folders '$work/report-matrix.json' '$work/report-installed.json' --markdown > '$work/diff-matrix-vs-installed.md'"
# The README's test command, all of the plugin's tests, with TensorRT-RTX where carried (on two
# H100s this found what CI cannot: context creation under 32 workers outlasting a test timeout).
step tests 240 "${rtx[@]}" ./dev test -q -rs -p no:cacheprovider
# Only the plugin's tests that need a GPU, verbose (not in the default steps).
step orders 150 "${rtx[@]}" python3 -m pytest tests/scenarios tests/backends tests/trace \
    -p no:cacheprovider -v -rs --tb=short
# The main job (pytest tests/regression --trtctx-order=all), cold then warm kernel cache, each
# (without TensorRT-RTX on the path, as the machine comes: every worker would load its 234 MB lib)
# with its terminal output and JSON report; then the warm report diffed against the cold one.
step bench_matrix 280 python3 benchmarks/bench_matrix.py --json "$work/bench_matrix.json" --out "$work"
step diff 20 bash -c "pytest-trtctx diff '$work/report-cold.json' '$work/report-warm.json' --markdown > '$work/diff.md'"
# TensorRT-RTX as the backend: every test must skip with the compute-capability reason.
step rtx 60 "${rtx[@]}" python3 -m pytest tests/regression --trtctx-order=torch-first,driver-first \
    --trtctx-backend=tensorrt_rtx -p no:cacheprovider -q -rs --trtctx-report="$work/report-rtx.json"
# Isolation benchmark (docs/isolation.md).
step bench_isolation 100 python3 benchmarks/bench_isolation.py --starts 3 --tests 150 --json "$work/bench_isolation.json"
# Not in the default steps: how the driver serialises CUDA context creation when many processes
# start at once; where the matrix's time per test goes with 8 workers; the matrix's wall time for
# 4, 8, 12 and 16 workers in one run (what config.AUTO_WORKERS rests on; about 7 minutes).
step cuda_init 60 python3 benchmarks/bench_isolation.py --cuda-only --starts 3 --json "$work/cuda_init.json"
step who_inits 90 "${rtx[@]}" bash -c \
    "python3 benchmarks/who_inits_cuda.py nvrtc && python3 benchmarks/who_inits_cuda.py tensorrt_rtx"
step main 200 python3 benchmarks/bench_matrix.py --cold-only --json "$work/main.json" --out "$work/main"
step matrix8 200 python3 benchmarks/bench_matrix.py --cold-only --workers 8 --durations 30 --json "$work/matrix8.json" --out "$work/w8"
step hazards 400 python3 benchmarks/probe_hazards.py --json "$work/hazards.json"
step hazards_suite 200 "${rtx[@]}" ./dev matrix -q --trtctx-order=hazards --durations=25 --trtctx-report="$work/report-hazards.json"
# The hazards job on the reference backend alone (issue 25's measure: the reference's job).
step hazards_auto 120 "${rtx[@]}" ./dev matrix -q --trtctx-order=hazards --trtctx-backend=auto --trtctx-report="$work/report-hazards-auto.json"
# The README's example of a user's own scenario, under every init order (its own included).
step own_scenario 120 python3 -m pytest examples/own_scenario --trtctx-order=all --trtctx-isolate=order \
    --trtctx-prebuild -p no:cacheprovider -q -rs --trtctx-report="$work/report-own-scenario.json"
# This session's main job and hazards job against the last committed H200 reports (run 9).
step diff_run9 40 bash -c "gzip -dc docs/results/report-h200-matrix-run9.json.gz > '$work/run9-matrix.json' \
    && gzip -dc docs/results/report-h200-hazards-run9.json.gz > '$work/run9-hazards.json' \
    && pytest-trtctx diff '$work/run9-matrix.json' '$work/report-matrix.json' --markdown > '$work/diff-matrix-vs-run9.md'; \
    pytest-trtctx diff '$work/run9-hazards.json' '$work/report-hazards.json' --markdown > '$work/diff-hazards-vs-run9.md'; \
    [ ! -f '$work/report-hazards-auto.json' ] || pytest-trtctx diff '$work/run9-hazards.json' \
    '$work/report-hazards-auto.json' --markdown > '$work/diff-hazards-auto-vs-run9.md'"
# The vendor backends (needs nvidia-cudnn-frontend in .whl; Triton comes with torch): the probe,
# their GPU tests, and the main job's matrix under every order and hazard with each of them.
step vendor_probe "${PROBE_SECONDS:-240}" "${rtx[@]}" python3 benchmarks/probe_vendor.py --json "$work/probe-vendor.json" ${PROBE_ARGS:-}
step vendor_tests 150 "${rtx[@]}" python3 -m pytest tests/backends/test_cudnn.py tests/backends/test_triton.py tests/benchmarks \
    -p no:cacheprovider -q -rs --tb=short
step triton_suite 150 "${rtx[@]}" ./dev matrix -q -rs --trtctx-order=all,hazards --trtctx-backend=triton \
    --trtctx-report="$work/report-triton.json"
step cudnn_suite "${CUDNN_SECONDS:-200}" "${rtx[@]}" ./dev matrix -q -rfs --durations=15 --trtctx-order=all,hazards \
    --trtctx-backend=cudnn --trtctx-cudnn-plans="${CUDNN_PLANS:-8}" --trtctx-report="$work/report-cudnn.json"
# The plugin's GPU tests, on 8 workers (the orders step's tests, less verbose).
step gpu_tests 200 "${rtx[@]}" python3 -m pytest tests/scenarios tests/backends tests/trace -n 8 \
    -p no:cacheprovider -q -rs --tb=short
# What the tracer sees of Triton's and cuDNN's loads and launches (docs/trace.md): one conv,
# no declared outcome, so that each failure prints its contexts and trace sections, and every
# run (a succeeding one too) keeps its traced events in the report.
step vendor_trace 120 bash -c "for b in triton cudnn; do echo \"== \$b\"; ${rtx[*]} python3 -m pytest benchmarks/vendor_trace \
    --trtctx-order=torch-first,driver-first,pushed-over-torch --trtctx-backend=\$b --trtctx-trace \
    --trtctx-report=$work/report-vendor-trace-\$b.json -p no:cacheprovider -rf --tb=long; done"
# One cuDNN spec, every plan, torch-first (a plan that returned without writing on a GPU),
# then that plan alone with cuDNN's own log.
step cudnn_spec 120 bash -c "${rtx[*]} python3 -m pytest tests/regression --trtctx-order=torch-first \
    --trtctx-backend=cudnn --trtctx-cudnn-plans=40 -k '${CUDNN_SPEC:-k1s1d1g1_bf16_b8_1x1}' \
    -p no:cacheprovider -q -rfs --tb=short; CUDNN_LOGLEVEL_DBG=3 CUDNN_LOGDEST_DBG='$work/cudnn-plan.log' \
    ${rtx[*]} python3 -m pytest tests/regression --trtctx-order=torch-first --trtctx-backend=cudnn \
    --trtctx-cudnn-plans=40 -k '${CUDNN_SPEC:-k1s1d1g1_bf16_b8_1x1} and ${CUDNN_PLAN:-plan22}' \
    -p no:cacheprovider -q -rfs --tb=short; tail -c 20000 '$work/cudnn-plan.log' > '$work/cudnn-plan-tail.log'; rm -f '$work/cudnn-plan.log'"
# cuDNN's matrix, one plan slot per spec (the heuristics' first choice), under every order and the
# hazards but the two whose cuDNN builds outlasted the run (cudnn_hazards looks at those alone).
step cudnn_rest 130 "${rtx[@]}" ./dev matrix -q -rfs --durations=10 --trtctx-backend=cudnn --trtctx-cudnn-plans=1 \
    --trtctx-order=all,foreign-stream,graph-capture,fork-after-init,pushed-over-torch,device-hop \
    --trtctx-report="$work/report-cudnn-rest.json"
step cudnn_hazards 75 "${rtx[@]}" ./dev matrix -v -rfs --durations=10 --trtctx-backend=cudnn --trtctx-cudnn-plans=1 \
    --trtctx-order=context-destroyed,lazy-stall -k k3s1d1g1_f32_b1_17x19 --trtctx-timeout=30 \
    --trtctx-report="$work/report-cudnn-hazards.json"
# Where the hazards job's seconds go: each worker's recipe, imports, prebuild and tests, per
# scenario, at HAZARD_WORKERS workers, of HAZARD_ORDERS (default all,hazards; all: the main job)
# (benchmarks/bench_hazards.py).
step hazards_timeline "${HAZARD_SECONDS:-200}" "${rtx[@]}" python3 benchmarks/bench_hazards.py --workers ${HAZARD_WORKERS:-auto 6} \
    --orders "${HAZARD_ORDERS:-all,hazards}" \
    --json "$work/hazards-timeline.json" --extra="${HAZARD_EXTRA:-}"
# context-destroyed's GPU tests with the worker's and the runtime's.
step cd_tests 150 python3 -m pytest tests/scenarios/test_context_destroyed.py tests/isolation/test_worker.py \
    tests/scenarios/test_runtime.py -p no:cacheprovider -q -rs --tb=short
# Some of the plugin's tests, named in SOME_TESTS (pytest arguments).
step some_tests 150 "${rtx[@]}" python3 -m pytest ${SOME_TESTS:-tests/scenarios} -p no:cacheprovider -q -rs --tb=short
# What a context costs made, loaded and destroyed, many alive in one process or one at a time.
step contexts 120 python3 benchmarks/bench_contexts.py --json "$work/contexts.json"
# cuDNN's matrix at CUDNN_PLANS slots under every order and hazard, with its timeline and report.
step cudnn_timeline "$((${CUDNN_SECONDS:-300} + 40))" "${rtx[@]}" python3 benchmarks/bench_hazards.py --workers auto \
    --timeout "${CUDNN_SECONDS:-300}" --json "$work/cudnn-timeline.json" --extra="--trtctx-backend=cudnn \
    --trtctx-cudnn-plans=${CUDNN_PLANS:-2} --trtctx-timeout=30 -rfs --durations=15 --trtctx-report=$work/report-cudnn-timeline.json"
step startup 150 python3 benchmarks/bench_startup.py --repeat "${STARTUP_REPEAT:-3}" --json "$work/startup.json"
step per_test 300 python3 benchmarks/bench_per_test.py --tests 48 --workers 4 --json "$work/per_test.json"
step trace_bench 200 "${rtx[@]}" python3 benchmarks/bench_matrix.py --compare-trace --json "$work/trace_bench.json" --out "$work/trace"
step scale 560 bash -c "for w in 16 4 8 12; do python3 benchmarks/bench_matrix.py --cold-only --workers \$w --json '$work'/scale-\$w.json || exit; done"
