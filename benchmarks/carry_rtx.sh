#!/usr/bin/env bash
# Packs TensorRT-RTX for a GPU host without a package index into .rtx/, as small as it goes
# (ignored by git): the cp312 bindings wheel from PyPI, the pure-Python tensorrt_rtx and
# tensorrt_rtx_libs packages from this venv, and libtensorrt_rtx.so.1 compressed with xz (234 MB,
# about 62 MB compressed). benchmarks/gpu_session.sh installs it when .rtx exists.
# Run here with the venv that has tensorrt-rtx-cu13 installed: bash benchmarks/carry_rtx.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=${PYTHON:-.venv/bin/python}
version=$("$py" -c "import tensorrt_rtx; print(tensorrt_rtx.__version__)")
site=$("$py" -c "import os, tensorrt_rtx_libs; print(os.path.dirname(os.path.dirname(tensorrt_rtx_libs.__file__)))")
rm -rf .rtx && mkdir -p .rtx/site/tensorrt_rtx_libs
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d .rtx "tensorrt-rtx-cu13-bindings==$version"
cp -r "$site/tensorrt_rtx" "$site"/tensorrt_rtx_cu13-*.dist-info "$site"/tensorrt_rtx_cu13_libs-*.dist-info .rtx/site/
cp "$site/tensorrt_rtx_libs/__init__.py" .rtx/site/tensorrt_rtx_libs/
find .rtx/site -name __pycache__ -prune -exec rm -rf {} +
# The x86 filter and a 256 MiB dictionary bring it under the limit (plain xz -9: 65.6 MB, too big
# beside the repo); it takes minutes: RTX_XZ=FILE reuses a compressed copy made earlier.
if [ -n "${RTX_XZ:-}" ]; then
    cp "$RTX_XZ" .rtx/libtensorrt_rtx.so.1.xz
else
    xz -T0 -c --x86 --lzma2=preset=9e,dict=256MiB "$site/tensorrt_rtx_libs/libtensorrt_rtx.so.1" \
        > .rtx/libtensorrt_rtx.so.1.xz
fi
# The bindings link against the ONNX parser too (4 MB): without it, import tensorrt_rtx fails.
xz -T0 -9 -c "$site/tensorrt_rtx_libs/libtensorrt_onnxparser_rtx.so.1" \
    > .rtx/libtensorrt_onnxparser_rtx.so.1.xz
du -sh .rtx
