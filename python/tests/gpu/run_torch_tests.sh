#!/bin/sh
# The torch tests on a machine with PyTorch (and a GPU): builds libbsa with the
# CUDA backend unless BSA_LIBRARY names a build, then runs every
# python/tests/gpu/test_*.py (test_torch: eager torch; test_torch_compile:
# the custom op under torch.compile and CUDA graphs; test_flex: BlockMask
# conversion) through run_all.py, which prints "N passed, N failed, N skipped".
#   sh python/tests/gpu/run_torch_tests.sh
# Environment: BSA_LIBRARY (use this libbsa.so), BSA_REQUIRE_GPU (1: a skip
# fails; default 1 where nvidia-smi lists a GPU), BSA_TORCH_BUILD (build folder,
# default build-torch), BSA_CUDA_ARCH (default 90: H100/H200), PYTHON (python3).
set -e
root=$(cd "$(dirname "$0")/../../.." && pwd)
PY=${PYTHON:-python3}
if [ -z "$BSA_LIBRARY" ]; then
    build=${BSA_TORCH_BUILD:-$root/build-torch}
    start=$(date +%s)
    cmake -S "$root" -B "$build" -DBSA_WITH_CUDA=ON -DBSA_CUDA_ARCHITECTURES="${BSA_CUDA_ARCH:-90}" \
        -DBSA_BUILD_TESTS=OFF -DBSA_BUILD_TOOLS=OFF >"$build.configure.log" 2>&1 ||
        { cat "$build.configure.log"; exit 1; }
    cmake --build "$build" -j "$(nproc)" >"$build.build.log" 2>&1 || { tail -50 "$build.build.log"; exit 1; }
    echo "libbsa built in $(( $(date +%s) - start )) s: $build/libbsa.so"
    BSA_LIBRARY="$build/libbsa.so"
fi
BSA_LIBRARY=$(cd "$(dirname "$BSA_LIBRARY")" && pwd)/$(basename "$BSA_LIBRARY")  # we cd below
export BSA_LIBRARY
# on a machine with an NVIDIA GPU every test must run: run_all.py fails skips
if [ -z "${BSA_REQUIRE_GPU:-}" ] && nvidia-smi -L >/dev/null 2>&1; then
    export BSA_REQUIRE_GPU=1
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
cd "$root/python"
PYTHONDONTWRITEBYTECODE=1 exec "$PY" tests/gpu/run_all.py "$@"
