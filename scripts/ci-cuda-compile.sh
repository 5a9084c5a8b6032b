#!/bin/sh
# CI (no GPU): builds the CUDA backend so that a compile error cannot land.
# Each build is CMake's own build of the shared library (target bsa: bsa_obj,
# and with sm_90 the Hopper object library bsa_cuda_hopper), so every file
# the build has is compiled here and none can be missed.  The sm_80/86/90
# build also builds the GPU test programs (tests/test_cuda*.c) and the GPU
# timing harness: `make test` builds them only where a GPU is present
# (cmake/cuda.cmake), so this is where a machine without one compiles them.
#   sm_80, sm_86, sm_90: with the CUDA 13 nvcc on the PATH or
#   /usr/local/cuda (skipped if none), in build-ci-cuda;
#   sm_70 (V100): CUDA 13 dropped it, so a CUDA 12 nvcc comes from the
#   nvidia-cuda-nvcc-cu12 + nvidia-cuda-runtime-cu12 Python wheels, installed
#   under $BSA_CI_CUDA12 (default ~/.cache/bsa-ci-cuda12, reused when present);
#   where they cannot compile, the Volta path is built for sm_75 with CUDA 13
#   (build-ci-cuda-sm70, build-ci-cuda-sm75).
# Prints each build's wall time and a summary of ptxas's -warn-spills
# warnings.  Exits nonzero on the first failure (with the last 40 lines of
# its log).
# Env: BSA_CI_SKIP_SM70=1 skips the Volta part; JOBS (default 2);
# BSA_CI_KEEP=1 keeps the objects of an earlier run (incremental: only what
# changed is rebuilt, and only its time and spill warnings are printed);
# BSA_CI_SPILLS (default 10): how many spilling kernels are listed.
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
clean=--clean-first
[ "${BSA_CI_KEEP:-0}" = 1 ] && clean=""

# build NVCC ARCHS DIR [CMAKE ARGS...]: configures DIR for the ;-separated
# ARCHS with NVCC and builds target bsa, JOBS at a time
build() {
    nvcc_bin=$1 archs=$2 dir=$3
    shift 3
    targets=${BUILD_TARGETS:-bsa} # the sm_80/86/90 build adds the GPU test programs
    sms=$(echo "$archs" | tr ';' '\n' | sed 's/^/sm_/' | tr '\n' ' ' | sed 's/ $//')
    mkdir -p "$dir"
    log=$dir/ci-build.log
    t0=$(date +%s)
    if ! { cmake -S . -B "$dir" -DBSA_WITH_CUDA=ON -DBSA_CUDA_ARCHITECTURES="$archs" \
        -DBSA_BUILD_TESTS=OFF -DBSA_BUILD_TOOLS=OFF -DBSA_WITH_CPU_DNNL=OFF \
        -DCMAKE_CUDA_COMPILER="$nvcc_bin" "$@" &&
        cmake --build "$dir" --target $targets -j "$JOBS" $clean; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "bsa ci: the CUDA build for $sms failed (log: $log)" >&2
        exit 1
    fi
    echo "bsa ci: CUDA backend for $sms with $("$nvcc_bin" --version | tail -1): $(($(date +%s) - t0)) s"
    # ptxas -warn-spills (backends/cuda/CMakeLists.txt): "Registers are
    # spilled to local memory in function 'NAME', S bytes spill stores, L
    # bytes spill loads", once per kernel and architecture: a count, then
    # the kernels with the most spill stores (the largest over the
    # architectures; every line is in the log)
    n=$(grep -c spill "$log" || true)
    spills=$(sed -n "s/.*function '\([^']*\)', \([0-9]*\) bytes spill stores, \([0-9]*\) bytes spill loads.*/\2 \3 \1/p" \
        "$log" | sort -k3,3 -k1,1nr | awk '!seen[$3]++' | sort -k1,1nr)
    k=$(printf '%s' "$spills" | grep -c . || true)
    echo "bsa ci: $sms: $n ptxas spill warning lines, $k kernels (log: $log)${spills:+; the most spill stores:}"
    demangle="cat"
    command -v c++filt >/dev/null && demangle=c++filt
    printf '%s\n' "$spills" | grep . | head -n "${BSA_CI_SPILLS:-10}" | while read -r st ld fn; do
        printf '    %5s B stores %5s B loads  %s\n' "$st" "$ld" "$(echo "$fn" | $demangle)"
    done
}

NVCC13=$(command -v nvcc || true)
[ -z "$NVCC13" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC13=/usr/local/cuda/bin/nvcc
if [ -n "$NVCC13" ]; then
    sh scripts/install-deps.sh libcmocka-dev # the test programs' framework
    gpu_tests=$(ls tests/test_cuda*.c | sed 's|.*/||; s|\.c$||' | tr '\n' ' ')
    # (set and reset around the call: a shell may keep an assignment that
    # prefixes a function call)
    BUILD_TARGETS="bsa $gpu_tests bsa_gpu_bench"
    build "$NVCC13" "80;86;90" build-ci-cuda -DBSA_BUILD_TESTS=ON -DBSA_BUILD_TOOLS=ON
    BUILD_TARGETS=""
    echo "bsa ci: GPU test programs and harness built: $gpu_tests bsa_gpu_bench"
else
    echo "bsa ci: no nvcc found: sm_80/sm_86/sm_90 build skipped"
fi

[ "${BSA_CI_SKIP_SM70:-0}" = 1 ] && exit 0
C12=${BSA_CI_CUDA12:-${XDG_CACHE_HOME:-$HOME/.cache}/bsa-ci-cuda12}
N12=$C12/nvidia/cuda_nvcc
R12=$C12/nvidia/cuda_runtime
if [ ! -d "$N12" ]; then
    t0=$(date +%s)
    python3 -m pip install -q --target "$C12" "nvidia-cuda-nvcc-cu12>=12.4,<13" \
        "nvidia-cuda-runtime-cu12>=12.4,<13" ||
        echo "bsa ci: pip could not install the CUDA 12 compiler wheels" >&2
    echo "bsa ci: CUDA 12 wheels installed in $(($(date +%s) - t0)) s"
fi
# Seen 2026-11 with nvidia-cuda-nvcc-cu12 12.9.86: the wheel carries only
# ptxas, libnvvm, libdevice and the crt headers: no nvcc driver, cudafe++,
# cicc, fatbinary or nvlink, so it cannot compile CUDA C++.  Then sm_70 is
# replaced by the lowest architecture CUDA 13 accepts (sm_75), as the
# issue allows; a V100 build needs a full CUDA 12.x toolkit (README).
missing=""
for tool in nvcc cudafe++ cicc fatbinary nvlink ptxas; do
    [ -x "$N12/bin/$tool" ] || [ -x "$N12/nvvm/bin/$tool" ] || missing="$missing $tool"
done
if [ -z "$missing" ]; then
    # the runtime's headers and libraries live in their own wheel
    build "$N12/bin/nvcc" 70 build-ci-cuda-sm70 \
        -DCMAKE_CUDA_FLAGS="-I$N12/include -I$R12/include" -DCMAKE_LIBRARY_PATH="$R12/lib"
elif [ -n "$NVCC13" ]; then
    echo "bsa ci: the CUDA 12 wheels lack:$missing; building sm_75 with CUDA 13 instead of sm_70"
    build "$NVCC13" 75 build-ci-cuda-sm75
else
    echo "bsa ci: no compiler for the V100 path (CUDA 12 wheels lack:$missing)" >&2
    exit 1
fi
