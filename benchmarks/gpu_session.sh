#!/usr/bin/env bash
# Everything that needs the GPU machine, in one call, each step time-boxed so that one hang cannot
# eat the session's GPU time, each log written as it goes (to $OUT, or ./gpu-out).
#   device run:  bash benchmarks/gpu_session.sh                   (about 7 minutes on the H100)
#   or in two calls, under the 10-minute limit of one:  STEPS="orders matrix" ...,
#   then STEPS="bench_isolation bench_matrix" ...
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1
{
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
    python3 -c "import sys, torch; from importlib.metadata import version as v; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda-bindings', v('cuda-bindings'), 'pytest', v('pytest'))"
    git log -1 --format='commit %h %s' 2>/dev/null
} > "$out/env.txt" 2>&1
cat "$out/env.txt"

steps=" ${STEPS:-orders matrix bench_isolation bench_matrix} "

step() {  # step NAME SECONDS COMMAND...
    local name=$1 secs=$2
    shift 2
    [[ $steps == *" $name "* ]] || return 0
    local t0=$SECONDS
    timeout -s ABRT "$secs" "$@" > "$out/$name.log" 2>&1
    echo "$name: exit $? in $((SECONDS - t0)) s: $(grep -E '(passed|failed|skipped|error)' "$out/$name.log" | tail -1)"
}

# The plugin's own tests that need a GPU (the rest run in CI).
step orders 150 python3 -m pytest tests/test_orders.py tests/test_backends.py -p no:cacheprovider -v -rs --tb=short
# The main job, with a JSON-free summary and junit for the serial sum.
step matrix 200 python3 -m pytest tests/regression --trtctx-order=all -p no:cacheprovider -q -rxs --junitxml="$out/matrix.xml"
# Benchmarks (docs/isolation.md).
step bench_isolation 120 python3 benchmarks/bench_isolation.py --starts 3 --tests 150 --json "$out/bench_isolation.json"
step bench_matrix 300 python3 benchmarks/bench_matrix.py --json "$out/bench_matrix.json"
